"""Storage failures the daemon ran into (disk full, quota, read-only), for STATUS= and /v1/status.

Writes the daemon persists (voices, config backups, job records and artefacts) go through
`guarded_write`: a failure with ENOSPC, EDQUOT or EROFS is recorded against the tracked root the
path lies under (the state or log directory) and re-raised as `StorageFailure`, an OSError the
API answers with 507; the next successful write under that root clears it. `refresh()` also
clears a "disk full" whose filesystem has room again (statvfs), so the state clears itself
after an operator frees space even when nothing is written. Thread-safe: jobs write from
worker threads while the supervisor thread reads `problems()`.
"""

from __future__ import annotations

import errno
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

__all__ = ["DISK_ERRNOS", "DiskProblem", "DiskState", "StorageFailure", "guarded_write", "guarded_writer",
           "has_room"]

T = TypeVar("T")
# errno → the words STATUS= uses for it
DISK_ERRNOS: Mapping[int, str] = {
    errno.ENOSPC: "disk full",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only filesystem",
}
# A "disk full" clears on its own once this much more is free than when the write failed.
DEFAULT_MIN_FREED_BYTES = 4 * 1024 * 1024


class StorageFailure(OSError):
    """A write failed because the storage refused it; `problem` is the STATUS= text."""

    def __init__(self, code: int, problem: str, path: str) -> None:
        super().__init__(code, f"{problem}: cannot write {path}", path)
        self.problem = problem


@dataclass(frozen=True)
class DiskProblem:
    root: str
    errno: int
    since: float  # epoch seconds of the first failure in this spell
    last_path: str
    count: int = 1
    free_at_failure: int = 0  # bytes free on its filesystem when it was (last) recorded

    @property
    def text(self) -> str:
        return f"{DISK_ERRNOS[self.errno]}: {self.root}"

    def to_json(self) -> dict[str, object]:
        return {"problem": DISK_ERRNOS[self.errno], "root": self.root, "errno": errno.errorcode[self.errno],
                "since": self.since, "last_path": self.last_path, "failures": self.count}


def is_disk_error(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in DISK_ERRNOS


def root_of(path: str, roots: Iterable[str]) -> str:
    """The deepest tracked root containing `path`; the path's own directory when none does."""
    matching = [root for root in roots if path == root or path.startswith(root.rstrip("/") + "/")]
    return max(matching, key=len) if matching else os.path.dirname(path) or path


def has_room(problem: DiskProblem, free_bytes: int, read_only: bool, min_freed_bytes: int) -> bool:
    """Pure: whether a recorded problem is over, judging by statvfs facts of its filesystem now.

    Disk full is over once `min_freed_bytes` more are free than at the failure (someone made
    room); read-only once the filesystem is writable again. Quota exhaustion is invisible to
    statvfs, so EDQUOT clears only on a successful write.
    """
    checks: Mapping[int, bool] = {
        errno.ENOSPC: not read_only and free_bytes >= problem.free_at_failure + min_freed_bytes,
        errno.EROFS: not read_only,
    }
    return checks.get(problem.errno, False)


def statvfs_facts(path: str) -> tuple[int, bool] | None:
    """(free bytes for unprivileged users, mounted read-only) of the filesystem holding `path`."""
    try:
        result = os.statvfs(path)
    except OSError:
        return None
    return result.f_bavail * result.f_frsize, bool(result.f_flag & os.ST_RDONLY)


class DiskState:
    """Storage problems by tracked root. `roots`: the directories worth naming (state_dir, log_dir)."""

    def __init__(self, roots: Iterable[Path | str] = (), *, clock: Callable[[], float] = time.time,
                 min_freed_bytes: int = DEFAULT_MIN_FREED_BYTES,
                 probe: Callable[[str], tuple[int, bool] | None] = statvfs_facts) -> None:
        self._roots = [str(root) for root in roots]
        self._clock, self._min_freed, self._probe = clock, min_freed_bytes, probe
        self._problems: dict[str, DiskProblem] = {}
        self._lock = threading.Lock()

    def record(self, path: Path | str, exc: BaseException) -> bool:
        """Note a failed write; False (nothing noted) unless it is a storage errno."""
        if not is_disk_error(exc):
            return False
        code, where = exc.errno, str(path)  # type: ignore[union-attr]
        root = root_of(where, self._roots)
        free = (self._probe(root) or (0, False))[0]
        with self._lock:
            old = self._problems.get(root)
            since, count = (old.since, old.count + 1) if old and old.errno == code else (self._clock(), 1)
            self._problems[root] = DiskProblem(root, code, since, where, count, free)
        return True

    def clear(self, path: Path | str) -> None:
        """A write under `path` worked: its root is fine again."""
        with self._lock:
            self._problems.pop(root_of(str(path), self._roots), None)

    def refresh(self) -> None:
        """Clear the problems whose filesystem has room again (statvfs)."""
        with self._lock:
            for root, problem in list(self._problems.items()):
                facts = self._probe(root)
                if facts is not None and has_room(problem, *facts, self._min_freed):
                    del self._problems[root]

    def problems(self) -> list[str]:
        """One line per root, e.g. "disk full: /var/lib/ishowttsd" (refreshed first)."""
        self.refresh()
        with self._lock:
            return [problem.text for _, problem in sorted(self._problems.items())]

    def snapshot(self) -> list[dict[str, object]]:
        """The problems as JSON for /v1/status ("storage" section)."""
        self.refresh()
        with self._lock:
            return [problem.to_json() for _, problem in sorted(self._problems.items())]


def guarded_write(disk_state: DiskState, path: Path | str, write: Callable[[], T]) -> T:
    """Run `write` (which writes `path`); record/clear its outcome; storage errors → StorageFailure."""
    try:
        result = write()
    except OSError as exc:
        if not disk_state.record(path, exc):
            raise
        raise StorageFailure(exc.errno, DISK_ERRNOS[exc.errno], str(path)) from exc
    disk_state.clear(path)
    return result


def guarded_writer(disk_state: DiskState,
                   write_file: Callable[[Path, bytes], None]) -> Callable[[Path, bytes], None]:
    """`write_file(path, data)` routed through guarded_write (for VoiceStore(write_file=...))."""

    def write(path: Path, data: bytes) -> None:
        guarded_write(disk_state, path, lambda: write_file(path, data))

    return write
