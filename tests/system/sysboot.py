"""What a test systemd instance is made of (InstanceSpec) and the script that boots it.

The boot script runs as PID 1 of fresh pid/mount/cgroup/uts/ipc namespaces (private mount
propagation), so nothing it mounts is visible on the host:
  * overlays on /etc and /var (and whatever else the spec names): users created, config written,
    packages installed inside the instance land in a throw-away upper directory;
  * tmpfs on /run, /tmp, /var/tmp and a fresh cgroup2 on /sys/fs/cgroup;
  * the harness directory (units, shared files) bind-mounted at /run/harness;
then it execs systemd with SYSTEMD_UNIT_PATH limited to the harness's unit directory.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

INSIDE_HARNESS = Path("/run/harness")
NS_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
KEEP_DIR = Path("/run/.harness-keep")
FRESH_TMPFS = (Path("/tmp"), Path("/var/tmp"))


def kept_paths() -> tuple[Path, ...]:
    """The checkout and its venv when they live under /tmp or /var/tmp (a CI clone may): the fresh tmpfs
    mounted there would hide them from the instance, so they are bound back in."""
    candidates = {Path(__file__).resolve().parents[2], Path(sys.prefix).resolve()}
    return tuple(sorted(p for p in candidates if any(p.is_relative_to(t) for t in FRESH_TMPFS)))


def keep_lines(paths: tuple[Path, ...]) -> tuple[list[str], list[str]]:
    """Shell lines to park `paths` under /run before /tmp is replaced, and to bind them back after."""
    before, after = [], []
    for index, path in enumerate(paths):
        parked, quoted = shlex.quote(str(KEEP_DIR / str(index))), shlex.quote(str(path))
        before += [f"mkdir -p {parked}", f"mount --rbind {quoted} {parked}"]
        after += [f"mkdir -p {quoted}", f"mount --rbind {parked} {quoted}"]
    return before, after
CONTAINER_NAME = "ishowttsd-systest"
MANAGER_DROPIN = "[Manager]\nDefaultLimitCORE=0\n"


@dataclass(frozen=True)
class InstanceSpec:
    """Units to boot with, and which host directories the instance may change (through overlays)."""

    units: Mapping[str, str]
    links: Mapping[str, str] = field(default_factory=dict)
    overlays: tuple[Path, ...] = (Path("/etc"), Path("/var"))
    traverse: tuple[Path, ...] = ()

    def all_overlays(self) -> tuple[Path, ...]:
        """/etc always (the manager drop-in goes there), plus directories made traversable."""
        wanted = (Path("/etc"), *self.overlays, *self.traverse)
        return tuple(dict.fromkeys(wanted))


def overlay_key(directory: Path) -> str:
    return "_".join(directory.parts[1:]) or "root"


def overlay_mount(directory: Path, work: Path) -> str:
    layer = work / "ovl" / overlay_key(directory)
    options = f"lowerdir={directory},upperdir={layer}/upper,workdir={layer}/work"
    return f"mount -t overlay overlay -o {shlex.quote(options)} {shlex.quote(str(directory))}"


def boot_script(spec: InstanceSpec, work: Path) -> str:
    """Shell script run as the namespaces' PID 1; ends by exec'ing systemd."""
    lines = ["#!/bin/sh", "set -eu"]
    lines += [overlay_mount(directory, work) for directory in spec.all_overlays()]
    lines += [
        "mount -t tmpfs -o mode=0755 tmpfs /run",
        f"mkdir {INSIDE_HARNESS}",
        f"mount --bind {shlex.quote(str(work / 'harness'))} {INSIDE_HARNESS}",
    ]
    park, restore = keep_lines(kept_paths())
    lines += [
        *park,
        "mount -t tmpfs -o mode=1777 tmpfs /tmp",
        "mount -t tmpfs -o mode=1777 tmpfs /var/tmp",
        *restore,
        "mount -t cgroup2 cgroup2 /sys/fs/cgroup",
    ]
    lines += [f"chmod o+x {shlex.quote(str(directory))}" for directory in spec.traverse]
    lines += [
        "mkdir -p /etc/systemd/system.conf.d",
        f"printf {shlex.quote(MANAGER_DROPIN)} > /etc/systemd/system.conf.d/50-harness.conf",
        f"exec env -i PATH={NS_PATH} container={CONTAINER_NAME} "
        f"SYSTEMD_UNIT_PATH={INSIDE_HARNESS}/units /lib/systemd/systemd",
    ]
    return "\n".join(lines) + "\n"


def prepare_layers(spec: InstanceSpec, work: Path) -> None:
    for directory in spec.all_overlays():
        layer = work / "ovl" / overlay_key(directory)
        (layer / "upper").mkdir(parents=True)
        (layer / "work").mkdir()


def launcher_argv(cgroup_procs: Path, script: Path) -> list[str]:
    """Move the launcher into the instance's cgroup, then unshare and run the boot script."""
    unshare = (
        "unshare --pid --fork --mount --mount-proc --cgroup --uts --ipc --propagation private "
        f"/bin/sh {shlex.quote(str(script))}"
    )
    return ["/bin/sh", "-c", f"echo $$ > {shlex.quote(str(cgroup_procs))} && exec {unshare}"]
