"""Building the Debian package from a copy of the tree, and judging what an install + purge left.

The install test runs dpkg inside a SystemdInstance whose /etc, /var, /usr and /opt are overlays,
so everything dpkg, the maintainer scripts and the daemon wrote is in the overlays' upper
directories. After the purge, every path there must be either gone again (whiteout or identical
to the host) or a file dpkg and the account tools rewrite by design (BOOKKEEPING).
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

from sysboot import overlay_key

BUILD_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "DEB_BUILD_OPTIONS": "nocheck"}
NOT_SOURCE = shutil.ignore_patterns(".venv", ".git", "__pycache__", "*.egg-info", ".pytest_cache",
                                    ".ruff_cache", ".hypothesis", "build", "dist", "out")
BOOKKEEPING = re.compile(
    r"^/etc/(passwd|group|shadow|gshadow)-?$"
    r"|^/etc/\.pwd\.lock$"
    r"|^/var/lib/dpkg/"
    r"|^/var/log/dpkg\.log$"
    r"|^/var/cache/(debconf|ldconfig|man)(/|$)"
    r"|^/var/lib/systemd/deb-systemd-helper-(enabled|masked)$"
)
INSTALL_OVERLAYS = (Path("/etc"), Path("/var"), Path("/usr"), Path("/opt"))


def build_package(repo: Path, workdir: Path) -> Path:
    """`dpkg-buildpackage -us -uc -b` in a copy of the tree; returns the .deb."""
    source = workdir / "src"
    shutil.copytree(repo, source, ignore=NOT_SOURCE, symlinks=True)
    result = subprocess.run(["dpkg-buildpackage", "-us", "-uc", "-b"], cwd=source, env={
        **BUILD_ENV, "HOME": str(workdir)}, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    (deb,) = workdir.glob("ishowttsd_*_all.deb")
    return deb


def upper_entries(work: Path, directory: Path) -> list[Path]:
    """Paths (as seen inside the instance) present in the upper layer of `directory`'s overlay."""
    upper = work / "ovl" / overlay_key(directory) / "upper"
    found = []
    for root, dirs, files in os.walk(upper):
        for name in dirs + files:
            found.append(directory / Path(root, name).relative_to(upper))
    return found


def leftovers(work: Path, merged_root: Path) -> list[str]:
    """What the install + purge changed on the instance's view of the host, beyond bookkeeping."""
    problems = []
    for directory in INSTALL_OVERLAYS:
        for inside in upper_entries(work, directory):
            verdict = _judge(inside, merged_root / inside.relative_to("/"))
            if verdict and not BOOKKEEPING.search(str(inside)):
                problems.append(f"{inside}: {verdict}")
    return sorted(problems)


def _judge(inside: Path, merged: Path) -> str:
    """'' when `inside` looks on the merged view as it does on the host, else what differs."""
    on_host, now = _kind(inside), _kind(merged)
    if on_host != now:
        return f"{on_host or 'absent'} on the host, {now or 'absent'} now"
    if now == "file" and inside.read_bytes() != merged.read_bytes():
        return "content differs from the host"
    return ""


def _kind(path: Path) -> str:
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return ""
    return "dir" if stat.S_ISDIR(mode) else "link" if stat.S_ISLNK(mode) else "file"
