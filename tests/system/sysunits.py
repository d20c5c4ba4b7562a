"""The unit directory a test systemd instance boots from, and the rendering of the project's units.

A test instance sees only these units (SYSTEMD_UNIT_PATH): the special targets systemd needs to
boot and exit, journald (so `journalctl -u` works), and the units under test. Everything here is
pure text manipulation except `write_unit_dir`, which writes the directory.
"""

from __future__ import annotations

import stat
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

HOST_UNIT_DIR = Path("/lib/systemd/system")
PACKAGED_VENV = "/opt/ishowttsd/venv"
HOME_DIRS = (Path("/root"), Path("/home"), Path("/run/user"))

BOOT_UNITS = (
    "multi-user.target", "basic.target", "sysinit.target", "sockets.target", "timers.target",
    "paths.target", "slices.target", "local-fs.target", "swap.target", "shutdown.target",
    "exit.target", "final.target", "umount.target", "systemd-exit.service",
)
JOURNALD_UNITS = ("systemd-journald.service", "systemd-journald.socket", "systemd-journald-dev-log.socket")
WANTS = {
    "sysinit.target.wants": ("systemd-journald.service",),
    "sockets.target.wants": ("systemd-journald.socket", "systemd-journald-dev-log.socket"),
}


def without_host_links(unit_text: str) -> str:
    """Journald's units minus what would reach the host: the /dev/log symlink and the audit socket."""
    kept = [line for line in unit_text.splitlines() if not line.startswith("Symlinks=")]
    return "\n".join(line.replace(" systemd-journald-audit.socket", "") for line in kept) + "\n"


def home_protection(read_paths: Iterable[Path]) -> str:
    """ProtectHome= value that still lets the service read `read_paths` (test venvs may live in /root)."""
    in_home = any(path.is_relative_to(home) for path in read_paths for home in HOME_DIRS)
    return "read-only" if in_home else "yes"


def render_service_unit(template: str, venv: Path, read_paths: Iterable[Path]) -> str:
    """The packaged unit pointed at `venv`, readable paths in a home directory made visible."""
    rendered = template.replace(PACKAGED_VENV, str(venv))
    rendered = rendered.replace("ProtectHome=yes", f"ProtectHome={home_protection(read_paths)}")
    return rendered.replace("PrivateTmp=yes\n", "PrivateTmp=yes\n" + private_tmp_binds(read_paths))


def private_tmp_binds(read_paths: Iterable[Path]) -> str:
    """A test venv/checkout under /tmp (a CI clone may be there) stays visible behind PrivateTmp=."""
    under_tmp = sorted({str(p) for p in read_paths if p.is_relative_to("/tmp") or p.is_relative_to("/var/tmp")})
    return "".join(f"BindReadOnlyPaths={path}\n" for path in under_tmp)


def untraversable_dirs(paths: Iterable[Path], mode_of: Callable[[Path], int]) -> list[Path]:
    """Ancestor directories of `paths` that other users cannot enter (no o+x), outermost first."""
    found: set[Path] = set()
    for path in paths:
        for ancestor in reversed(path.parents):
            if not mode_of(ancestor) & stat.S_IXOTH:
                found.add(ancestor)
    return sorted(found, key=lambda p: (len(p.parts), str(p)))


def boot_unit_texts(host_dir: Path = HOST_UNIT_DIR) -> dict[str, str]:
    """Unit name → text of the units every instance needs (targets, exit, journald)."""
    texts = {name: (host_dir / name).read_text() for name in BOOT_UNITS}
    texts["default.target"] = texts["multi-user.target"]
    texts.update({name: without_host_links((host_dir / name).read_text()) for name in JOURNALD_UNITS})
    return texts


def write_unit_dir(dest: Path, units: Mapping[str, str], links: Mapping[str, str]) -> None:
    """Write unit files, `.wants` symlinks for journald, and extra symlinks (name → target path)."""
    dest.mkdir(parents=True, exist_ok=True)
    for name, text in {**boot_unit_texts(), **units}.items():
        _write_unit(dest / name, text)
    for wants_dir, names in WANTS.items():
        (dest / wants_dir).mkdir(exist_ok=True)
        for name in names:
            (dest / wants_dir / name).symlink_to(Path("..") / name)
    for name, target in links.items():
        (dest / name).symlink_to(target)


def _write_unit(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
