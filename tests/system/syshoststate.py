"""A snapshot of what the system tests could leave behind on the host, and how two differ.

Taken before and after the whole tests/system session: mounts, test cgroups, harness processes,
users and groups, the package's files and dpkg's idea of the package.
"""

from __future__ import annotations

import hashlib
import subprocess
from dataclasses import dataclass, fields
from pathlib import Path

from syscgroup import leftover_cgroups

WATCHED_PATHS = (
    "/etc/ishowttsd", "/var/lib/ishowttsd", "/var/log/ishowttsd", "/opt/ishowttsd", "/run/ishowttsd",
    "/lib/systemd/system/ishowttsd.service", "/etc/logrotate.d/ishowttsd",
    "/usr/lib/tmpfiles.d/ishowttsd.conf", "/usr/lib/ishowttsd", "/etc/systemd/system/ishowttsd.service.d",
    "/usr/sbin/ishowttsd-setup-venv", "/usr/bin/ishowttsctl", "/dev/log",
    "/etc/systemd/system/multi-user.target.wants/ishowttsd.service",
)
HARNESS_MARKERS = ("ishowttsd-systest", "/run/harness")
ACCOUNT_FILES = ("/etc/passwd", "/etc/group", "/etc/shadow", "/etc/gshadow")
SCRATCH_PATTERNS = ("ishowttsd-systest-*", "ishowttsd-debian-build-*")


@dataclass(frozen=True)
class HostSnapshot:
    mounts: frozenset[str]
    cgroups: tuple[str, ...]
    processes: frozenset[str]
    accounts: str
    paths: frozenset[str]
    dpkg: str
    scratch: frozenset[str]

    @classmethod
    def take(cls) -> HostSnapshot:
        return cls(mounts=_mount_points(), cgroups=tuple(map(str, leftover_cgroups())),
                   processes=_harness_processes(), accounts=_accounts_digest(),
                   paths=frozenset(p for p in WATCHED_PATHS if Path(p).exists() or Path(p).is_symlink()),
                   dpkg=_dpkg_status("ishowttsd"), scratch=_scratch_dirs())


def differences(before: HostSnapshot, after: HostSnapshot) -> list[str]:
    """One line per field that changed."""
    return [f"{f.name}: {getattr(before, f.name)!r} -> {getattr(after, f.name)!r}"
            for f in fields(HostSnapshot) if getattr(before, f.name) != getattr(after, f.name)]


def _scratch_dirs() -> frozenset[str]:
    return frozenset(str(p) for pattern in SCRATCH_PATTERNS for p in Path("/tmp").glob(pattern))


def _mount_points() -> frozenset[str]:
    lines = Path("/proc/self/mountinfo").read_text().splitlines()
    return frozenset(line.split()[4] for line in lines)


def _harness_processes() -> frozenset[str]:
    found = set()
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if any(marker in text for marker in HARNESS_MARKERS) and "pytest" not in text:
            found.add(f"{cmdline.parent.name}: {text.strip()}")
    return frozenset(found)


def _accounts_digest() -> str:
    digest = hashlib.sha256()
    for name in ACCOUNT_FILES:
        digest.update(Path(name).read_bytes() if Path(name).exists() else b"-")
    return digest.hexdigest()


def _dpkg_status(package: str) -> str:
    result = subprocess.run(["dpkg-query", "-W", "-f", "${Status}", package],
                            capture_output=True, text=True, check=False)
    return result.stdout.strip()
