"""All sysfs/procfs file access under one injectable root.

`Sysfs(Path("/"))` reads the live machine; tests pass a copy of a checked-in fake tree
(tests/fixtures/sysfs/<board>/). Paths given to the methods are relative to the root
("sys/class/devfreq"); a leading "/" is ignored and ".." is refused, so nothing outside the
root is touched unless the root itself is "/".

OS errors become typed exceptions: a missing file (ENOENT, ENOTDIR) is SysfsMissing, a refused
one (EACCES, EPERM) is SysfsPermissionDenied, anything else (EISDIR, EIO from a sensor that is
offline, unparsable content) is SysfsInvalid. Callers turn those into "missing field + reason".
"""

from __future__ import annotations

import errno
import os
from pathlib import Path, PurePosixPath


class SysfsError(Exception):
    """A sysfs access failed; `path` is the absolute path that was tried."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class SysfsMissing(SysfsError):
    """The file or directory does not exist."""


class SysfsPermissionDenied(SysfsError):
    """The kernel refused the access (EACCES/EPERM)."""


class SysfsInvalid(SysfsError):
    """The path exists but could not be read/written as a value (EISDIR, EIO, bad content)."""


ERRNO_TO_ERROR: dict[int, type[SysfsError]] = {
    errno.ENOENT: SysfsMissing,
    errno.ENOTDIR: SysfsMissing,
    errno.EACCES: SysfsPermissionDenied,
    errno.EPERM: SysfsPermissionDenied,
}


def typed_error(path: Path, exc: OSError) -> SysfsError:
    """Map an OSError to the SysfsError subclass for its errno (SysfsInvalid by default)."""
    error_class = ERRNO_TO_ERROR.get(exc.errno or 0, SysfsInvalid)
    return error_class(path, exc.strerror or str(exc))


class Sysfs:
    """Reads and writes small attribute files below `root`."""

    def __init__(self, root: Path) -> None:
        self._root = Path(root)

    @property
    def root(self) -> Path:
        return self._root

    def path(self, relative: str | PurePosixPath) -> Path:
        """Absolute path of `relative` under the root; refuses '..' components."""
        parts = PurePosixPath(str(relative)).parts
        if ".." in parts:
            raise ValueError(f"refusing path that leaves the sysfs root: {relative}")
        return self._root.joinpath(*[part for part in parts if part != "/"])

    def read_text(self, relative: str) -> str:
        """File content with surrounding whitespace and NUL bytes (device-tree strings) removed."""
        target = self.path(relative)
        try:
            return target.read_text(encoding="utf-8", errors="replace").strip("\x00 \t\r\n")
        except OSError as exc:
            raise typed_error(target, exc) from exc

    def read_int(self, relative: str) -> int:
        return self._parse_int(relative, self.read_text(relative))

    def read_ints(self, relative: str) -> list[int]:
        """Whitespace-separated integers, e.g. devfreq available_frequencies."""
        return [self._parse_int(relative, word) for word in self.read_text(relative).split()]

    def write_text(self, relative: str, value: str) -> None:
        """Write an attribute. Never creates a file: a missing attribute is SysfsMissing."""
        target = self.path(relative)
        try:
            fd = os.open(target, os.O_WRONLY | os.O_TRUNC)
        except OSError as exc:
            raise typed_error(target, exc) from exc
        try:
            os.write(fd, value.encode("utf-8"))
        except OSError as exc:
            raise typed_error(target, exc) from exc
        finally:
            os.close(fd)

    def exists(self, relative: str) -> bool:
        return self.path(relative).exists()

    def writable(self, relative: str) -> bool:
        """Whether this process (its effective uid) may write the attribute."""
        return os.access(self.path(relative), os.W_OK, effective_ids=True)

    def is_dir(self, relative: str) -> bool:
        return self.path(relative).is_dir()

    def glob(self, pattern: str) -> list[str]:
        """Sorted root-relative paths matching a glob pattern (e.g. 'sys/class/thermal/thermal_zone*')."""
        matches = self._root.glob(str(PurePosixPath(pattern)).lstrip("/"))
        return sorted(str(match.relative_to(self._root)) for match in matches)

    def link_name(self, relative: str) -> str:
        """Last component of a symlink's target, read without following it out of the root."""
        target = self.path(relative)
        try:
            return PurePosixPath(os.readlink(target)).name
        except OSError as exc:
            raise typed_error(target, exc) from exc

    def _parse_int(self, relative: str, text: str) -> int:
        try:
            return int(text.split()[0]) if text else int(text)
        except ValueError as exc:
            raise SysfsInvalid(self.path(relative), f"not an integer: {text[:40]!r}") from exc
