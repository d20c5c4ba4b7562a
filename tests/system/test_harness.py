"""The systemd test harness itself: what an instance changes stays private, and teardown leaves
nothing behind even when a service refuses to stop."""

from __future__ import annotations

import stat
import time
from pathlib import Path

import pytest
from harness import SystemdInstance
from sysboot import InstanceSpec, boot_script
from sysunits import home_protection, untraversable_dirs, without_host_links

pytestmark = pytest.mark.system


def test_changes_inside_an_instance_stay_inside() -> None:
    passwd = Path("/etc/passwd").read_bytes()
    with SystemdInstance(InstanceSpec(units={})) as sd:
        sd.write_file("/etc/ishowttsd-harness-probe", "inside\n")
        sd.add_system_user("harnessprobe", home="/nonexistent")
        sd.run("mkdir", "/var/lib/ishowttsd-harness-probe")
        assert sd.run("getent", "passwd", "harnessprobe").returncode == 0
        assert "Startup finished" in sd.journalctl("-b").stdout
        assert sd.run("readlink", "/proc/1/exe").stdout.strip() == "/usr/lib/systemd/systemd"
        work, cgroup = sd.work, sd.cgroup.path
        assert not Path("/etc/ishowttsd-harness-probe").exists()
        assert not Path("/var/lib/ishowttsd-harness-probe").exists()
        assert Path("/etc/passwd").read_bytes() == passwd
    assert not work.exists() and not cgroup.exists()
    assert not Path("/dev/log").exists() or Path("/dev/log").is_socket()


def test_teardown_kills_a_service_that_ignores_sigterm() -> None:
    sd = SystemdInstance(InstanceSpec(units={}), exit_timeout=3)
    with sd:
        sd.run("systemd-run", "--unit=stubborn", "-p", "TimeoutStopSec=600", "sh", "-c",
               "trap '' TERM; while :; do sleep 1; done")
        sd.wait_state("stubborn", "ActiveState", "active", 10)
        procs = (sd.cgroup.path / "system.slice" / "stubborn.service" / "cgroup.procs").read_text().split()
        started = time.monotonic()
    assert time.monotonic() - started < 30
    assert procs and not any(Path(f"/proc/{pid}").exists() for pid in procs)


def test_untraversable_dirs_lists_ancestors_without_search_permission() -> None:
    modes = {Path("/"): 0o755, Path("/root"): 0o700, Path("/root/venv"): 0o755, Path("/work"): 0o711}
    found = untraversable_dirs([Path("/root/venv/bin"), Path("/work/x")], lambda p: modes[p] | stat.S_IFDIR)
    assert found == [Path("/root")]


def test_home_protection_relaxes_only_for_paths_in_home_directories() -> None:
    assert home_protection([Path("/work/main/.venv")]) == "yes"
    assert home_protection([Path("/work/main/.venv"), Path("/root/.pyenv/bin/python3")]) == "read-only"


def test_journald_units_lose_their_host_facing_parts() -> None:
    text = ("[Socket]\nSymlinks=/dev/log\nListenDatagram=/run/x\n"
            "[Service]\nSockets=a.socket systemd-journald-audit.socket\n")
    assert without_host_links(text) == "[Socket]\nListenDatagram=/run/x\n[Service]\nSockets=a.socket\n"


def test_boot_script_mounts_overlays_before_hiding_tmp() -> None:
    lines = boot_script(InstanceSpec(units={}, traverse=(Path("/root"),)), Path("/tmp/w")).splitlines()
    markers = ("lowerdir=/etc,", "lowerdir=/root,", "mount --bind /tmp/w/harness", "tmpfs /tmp", "chmod o+x /root")
    order = [next(i for i, line in enumerate(lines) if marker in line) for marker in markers]
    assert order == sorted(order)
    assert lines[-1].startswith("exec env -i") and "SYSTEMD_UNIT_PATH=/run/harness/units" in lines[-1]
