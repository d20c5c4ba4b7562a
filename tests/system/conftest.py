"""Fixtures for the system tests: real systemd (as PID 1 in private namespaces), logrotate, dpkg.

Every test here is marked `system`, needs root and the tools scripts/system-deps.sh installs, and
is skipped with the reason when they are missing. The whole session is wrapped in a host check:
mounts, test cgroups, harness processes, accounts, the package's paths and its dpkg status must
be the same after the session as before it.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from harness import SystemdInstance
from sysboot import InstanceSpec
from syscgroup import UNIFIED_ROOT
from sysdaemon import daemon_config, provision
from syshoststate import HostSnapshot, differences
from sysunits import render_service_unit, untraversable_dirs

REPO = Path(__file__).resolve().parents[2]
SERVICE_TEMPLATE = REPO / "systemd" / "ishowttsd.service"
REQUIRED_TOOLS = ("unshare", "nsenter", "setpriv", "curl", "useradd", "systemd-analyze", "journalctl")


def missing_prerequisite() -> str | None:
    """Why the system tests cannot run here, or None."""
    if os.geteuid() != 0:
        return "system tests need root (real systemd, users, dpkg)"
    absent = [tool for tool in REQUIRED_TOOLS if shutil.which(tool) is None]
    if absent:
        return f"missing {', '.join(absent)}: run scripts/system-deps.sh"
    if not Path("/lib/systemd/systemd").exists():
        return "no /lib/systemd/systemd"
    if not (UNIFIED_ROOT / "cgroup.procs").exists():
        return f"no cgroup v2 hierarchy at {UNIFIED_ROOT}"
    return None


@pytest.fixture(scope="session", autouse=True)
def system_prerequisites() -> None:
    reason = missing_prerequisite()
    if reason:
        pytest.skip(reason)


@pytest.fixture(scope="session", autouse=True)
def host_left_unchanged(system_prerequisites: None) -> Iterator[None]:
    """Session-level leftover check: the host looks the same after all system tests."""
    before = HostSnapshot.take()
    yield
    changed = differences(before, HostSnapshot.take())
    assert not changed, "system tests left things behind:\n" + "\n".join(changed)


@pytest.fixture(scope="session")
def venv() -> Path:
    """The virtual environment running these tests: it has the daemon and the tiny model."""
    return Path(sys.prefix)


@pytest.fixture(scope="session")
def service_read_paths(venv: Path) -> tuple[Path, ...]:
    """What the service user must be able to read: the venv, its interpreter, the source tree."""
    return (venv, Path(os.path.realpath(venv / "bin" / "python3")), REPO)


@pytest.fixture(scope="session")
def service_spec(venv: Path, service_read_paths: tuple[Path, ...]) -> InstanceSpec:
    unit = render_service_unit(SERVICE_TEMPLATE.read_text(), venv, service_read_paths)
    traverse = untraversable_dirs(service_read_paths, lambda path: path.stat().st_mode)
    return InstanceSpec(units={"ishowttsd.service": unit}, traverse=tuple(traverse))


def booted(spec: InstanceSpec, config_text: str) -> Iterator[SystemdInstance]:
    with SystemdInstance(spec) as sd:
        provision(sd, config_text)
        try:
            yield sd
        finally:
            print(sd.unit_journal("ishowttsd"))  # shown by pytest when the test failed


@pytest.fixture
def ishowttsd_instance(service_spec: InstanceSpec) -> Iterator[SystemdInstance]:
    """A fresh systemd with the ishowttsd unit, its users and the test config; not started."""
    yield from booted(service_spec, daemon_config())


@pytest.fixture
def fast_watchdog_instance(service_spec: InstanceSpec) -> Iterator[SystemdInstance]:
    """As ishowttsd_instance, with a drop-in shortening WatchdogSec= to keep the test quick."""
    dropin = {"ishowttsd.service.d/50-test-watchdog.conf": "[Service]\nWatchdogSec=10\n"}
    yield from booted(replace(service_spec, units={**service_spec.units, **dropin}), daemon_config())
