"""A leaf cgroup (cgroup v2) that holds one test systemd instance and everything it starts.

The host's unified hierarchy is mounted at /sys/fs/cgroup/unified. Each instance gets its own
directory there, the launcher moves itself into it before `unshare --cgroup`, so the instance's
cgroup namespace is rooted at that directory. Teardown kills the whole subtree (cgroup.kill) and
removes it bottom-up, so no process and no cgroup outlives the test.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

UNIFIED_ROOT = Path("/sys/fs/cgroup/unified")
PREFIX = "ishowttsd-systest-"


class CgroupLeaf:
    """One cgroup directory under the unified hierarchy, owned by one test instance."""

    def __init__(self, name: str, root: Path = UNIFIED_ROOT) -> None:
        self.path = root / f"{PREFIX}{name}"

    def create(self) -> None:
        self.path.mkdir()

    def procs_file(self) -> Path:
        return self.path / "cgroup.procs"

    def is_populated(self) -> bool:
        if not self.path.exists():
            return False
        events = (self.path / "cgroup.events").read_text()
        return "populated 1" in events

    def kill_and_remove(self, timeout: float = 10.0) -> None:
        """SIGKILL everything in the subtree, wait until it is empty, remove every directory."""
        if not self.path.exists():
            return
        (self.path / "cgroup.kill").write_text("1")
        _wait(lambda: not self.is_populated(), timeout, f"{self.path} still populated after cgroup.kill")
        for directory in _depth_first(self.path):
            _rmdir_retrying(directory, timeout)


def leftover_cgroups(root: Path = UNIFIED_ROOT) -> list[Path]:
    """Test cgroups that still exist (there should be none between tests)."""
    return sorted(root.glob(f"{PREFIX}*"))


def _depth_first(top: Path) -> Iterator[Path]:
    for child in sorted(p for p in top.iterdir() if p.is_dir()):
        yield from _depth_first(child)
    yield top


def _rmdir_retrying(directory: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            directory.rmdir()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _wait(predicate: Callable[[], bool], timeout: float, message: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(message)
        time.sleep(0.05)
