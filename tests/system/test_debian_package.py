"""The Debian package: built with dpkg-buildpackage, lintian-clean, installed and started under a
real systemd, purged without a trace. dpkg runs inside a private namespace whose /etc, /var, /usr
and /opt are overlays of the host's, so the host itself is never touched."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sysconfig
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import SystemdInstance
from sysboot import InstanceSpec
from sysdaemon import CONFIG, SERVICE, SERVICE_USER, daemon_config, start_and_wait, synthesize
from sysdeb import INSTALL_OVERLAYS, build_package, leftovers
from sysunits import home_protection, private_tmp_binds, untraversable_dirs

pytestmark = pytest.mark.system

REPO = Path(__file__).resolve().parents[2]
UNIT_PATH = "/lib/systemd/system/ishowttsd.service"
VENV = "/opt/ishowttsd/venv"
CONFFILES = {"/etc/ishowttsd/ishowttsd.toml", "/etc/logrotate.d/ishowttsd"}
ACCOUNT_FILES = ("/etc/passwd", "/etc/group", "/etc/shadow", "/etc/gshadow")


@pytest.fixture(scope="session")
def deb() -> Iterator[Path]:
    """One package per session, built in a throw-away copy of the tree (no debris anywhere)."""
    workdir = Path(tempfile.mkdtemp(prefix="ishowttsd-debian-build-", dir="/tmp"))
    try:
        yield build_package(REPO, workdir)
    finally:
        shutil.rmtree(workdir)


@pytest.fixture(scope="session")
def reused_site_packages() -> Path:
    """The test venv's packages stand in for the torch/f5-tts download of a real set-up."""
    path = Path(sysconfig.get_paths()["purelib"])
    if path.is_relative_to("/tmp") or path.is_relative_to("/var/tmp"):
        # Known gap: the installed (packaged, PrivateTmp=yes) unit does not see a reused venv under /tmp even
        # with a BindReadOnlyPaths= drop-in (seen: ModuleNotFoundError at start). From any other checkout
        # location this test runs in full.
        pytest.skip(f"the test venv lives under /tmp ({path}); the installed unit's PrivateTmp hides it")
    return path


@pytest.fixture
def install_instance(reused_site_packages: Path) -> Iterator[SystemdInstance]:
    traverse = untraversable_dirs([reused_site_packages], lambda path: path.stat().st_mode)
    spec = InstanceSpec(units={}, links={"ishowttsd.service": UNIT_PATH}, overlays=INSTALL_OVERLAYS,
                        traverse=tuple(traverse))
    with SystemdInstance(spec) as sd:
        yield sd


def deb_field(deb: Path, field: str) -> str:
    return subprocess.run(["dpkg-deb", "-f", str(deb), field], capture_output=True, text=True,
                          check=True).stdout.strip()


def test_lintian_reports_no_errors_or_warnings(deb: Path) -> None:
    result = subprocess.run(["lintian", "--pedantic", "--info", str(deb)], capture_output=True, text=True,
                            check=False, env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"})
    tags = [line for line in result.stdout.splitlines() if line[:2] in ("E:", "W:", "I:", "P:")]
    assert tags == [], result.stdout


def test_package_ships_the_unit_and_conffiles_but_no_python_library_dependencies(deb: Path) -> None:
    depends = {d.strip().split()[0] for d in deb_field(deb, "Depends").split(",")}
    contents = subprocess.run(["dpkg-deb", "-c", str(deb)], capture_output=True, text=True, check=True).stdout
    conffiles = subprocess.run(["dpkg-deb", "--info", str(deb), "conffiles"], capture_output=True, text=True,
                               check=True).stdout.split()

    assert depends == {"adduser", "python3-venv", "python3:any"}
    assert deb_field(deb, "Architecture") == "all"
    assert set(conffiles) == CONFFILES
    shipped = (UNIT_PATH, "/lib/systemd/system/ishowttsd-relock.path", "/lib/systemd/system/ishowttsd-relock.service",
               "/usr/lib/tmpfiles.d/ishowttsd.conf", "/usr/sbin/ishowttsd-setup-venv",
               "/usr/lib/ishowttsd/ishowttsd/daemon.py", "/usr/lib/ishowttsd/ishowttsd-0.1.0.dist-info/METADATA")
    for path in shipped:
        assert f".{path}\n" in contents, path


@contextlib.contextmanager
def services_allowed_to_start(sd: SystemdInstance) -> Iterator[None]:
    """Like a normal system: without the host's policy-rc.d (a container image's "never start
    services"), which is put back afterwards so the overlay ends up identical to the host."""
    policy = sd.path("/usr/sbin/policy-rc.d")
    saved = policy.read_bytes() if policy.exists() else None
    policy.unlink(missing_ok=True)
    try:
        yield
    finally:
        if saved is not None:
            policy.write_bytes(saved)
            policy.chmod(0o755)


def snapshot_accounts(sd: SystemdInstance) -> dict[str, bytes]:
    return {name: sd.path(name).read_bytes() for name in ACCOUNT_FILES}


def install_and_set_up(sd: SystemdInstance, deb: Path, site_packages: Path) -> None:
    sd.run("dpkg", "-i", str(sd.share(deb)), timeout=180)
    assert (sd.show(SERVICE, "ConditionResult"), sd.show(SERVICE, "ActiveState")) == ("no", "inactive"), \
        "postinst's start should be skipped until the venv exists"
    sd.run("ishowttsd-setup-venv", "--flavour", "cpu", "--offline",
           "--reuse-site-packages", str(site_packages), timeout=300)
    sd.write_file(CONFIG, daemon_config())
    # Only for this test's reused venv: a checkout in a home directory, or under /tmp (a CI clone may be
    # there), must stay visible behind ProtectHome=/PrivateTmp= of the packaged unit.
    extra = "ProtectHome=read-only\n" if home_protection([site_packages]) != "yes" else ""
    extra += private_tmp_binds([site_packages])
    if extra:
        dropin = f"/etc/systemd/system/{SERVICE}.service.d/50-test.conf"
        sd.write_file(dropin, "[Service]\n" + extra)
        sd.daemon_reload()


def test_install_start_and_purge_leave_the_system_as_it_was(
        deb: Path, install_instance: SystemdInstance, reused_site_packages: Path) -> None:
    sd = install_instance
    accounts_before, baseline = snapshot_accounts(sd), leftovers(sd.work, sd.path("/"))
    packages_before = sd.run("dpkg-query", "-W", "-f", "${Package} ${Status}\\n").stdout

    with services_allowed_to_start(sd):
        install_and_purge(sd, deb, reused_site_packages)

    assert sd.show(SERVICE, "ActiveState") == "inactive"
    assert sd.run("dpkg-query", "-W", "-f", "${Package} ${Status}\\n").stdout == packages_before
    assert snapshot_accounts(sd) == accounts_before
    assert sorted(set(leftovers(sd.work, sd.path("/"))) - set(baseline)) == []


def install_and_purge(sd: SystemdInstance, deb: Path, reused_site_packages: Path) -> None:
    install_and_set_up(sd, deb, reused_site_packages)
    wants = sd.path(f"/etc/systemd/system/multi-user.target.wants/{SERVICE}.service")
    assert str(wants.readlink()) == UNIT_PATH, "not enabled at installation"
    relock = sd.path(f"/etc/systemd/system/{SERVICE}.service.wants/ishowttsd-relock.path")
    assert str(relock.readlink()) == "/lib/systemd/system/ishowttsd-relock.path", "relock path unit not enabled"
    owners = sd.run("stat", "-c", "%U %a", "/var/lib/ishowttsd", "/var/log/ishowttsd").stdout.split("\n")
    assert owners[:2] == [f"{SERVICE_USER} 750"] * 2
    code_path = sd.run(f"{VENV}/bin/python3", "-I", "-c", "import ishowttsd; print(ishowttsd.__file__)")
    assert code_path.stdout.strip() == "/usr/lib/ishowttsd/ishowttsd/__init__.py"
    start_and_wait(sd)
    assert synthesize(sd, "Installed from the Debian package.", user=SERVICE_USER)[:2] == (200, "audio/wav")
    assert sd.run("ishowttsctl", "status").returncode == 0

    sd.run("dpkg", "-P", "ishowttsd", timeout=180)
