"""Root re-lock of a drifted GPU clock lock under a real systemd (R1, R5, R35).

The daemon runs unprivileged; ExecStartPre=+ locks the clocks. Here the GPU is a writable copy of
the checked-in AGX Orin tree with the fake jetson_clocks on the root steps' PATH, so the lock really
writes devfreq min/max/cur files. A "governor" then drops the clocks; the daemon's clocks job sees
the drift, cannot re-apply it (permission denied), writes /run/ishowttsd/relock-request;
ishowttsd-relock.path starts ishowttsd-relock.service as root, which re-locks and answers in
/run/ishowttsd/relock-result.json; the next clocks check reports the re-lock and reads back a lock.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from conftest import booted
from harness import SystemdInstance
from sysboot import InstanceSpec
from sysdaemon import SERVICE, SERVICE_USER, daemon_config, request, start_and_wait
from sysunits import render_service_unit

from ishowttsd.jobs.clocks import RELOCK_REQUESTED

pytestmark = pytest.mark.system

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures"
RELOCK_UNITS = ("ishowttsd-relock.path", "ishowttsd-relock.service")
FAKE = Path("/var/lib/fakegpu")
GPU_NODE = FAKE / "root/sys/class/devfreq/17000000.ga10b"
TOP_HZ, ORIGINAL_MIN_HZ = 1300500000, 114750000
REQUEST, RESULT = "/run/ishowttsd/relock-request", "/run/ishowttsd/relock-result.json"
FAKE_PATH = f"Environment=PATH={FAKE}/bin:/usr/sbin:/usr/bin:/sbin:/bin\n"
SECURITY_THRESHOLD = 30  # systemd-analyze's 0-100 scale; root, /sys and GPU devices are needed


def relock_units(venv: Path, read_paths: tuple[Path, ...]) -> dict[str, str]:
    return {name: render_service_unit((REPO / "systemd" / name).read_text(), venv, read_paths)
            for name in RELOCK_UNITS}


def fake_gpu_units() -> dict[str, str]:
    """Drop-ins: the path unit enabled with the service (as `systemctl enable` does through
    WantedBy=), the fake tools on the root steps' PATH, the fake tree writable for the relock unit."""
    return {
        "ishowttsd.service.d/60-relock.conf": "[Unit]\nWants=ishowttsd-relock.path\n",
        "ishowttsd.service.d/61-fake-gpu.conf": "[Service]\n" + FAKE_PATH,
        "ishowttsd-relock.service.d/61-fake-gpu.conf": f"[Service]\n{FAKE_PATH}ReadWritePaths={FAKE}\n",
    }


def fake_gpu_config() -> str:
    return daemon_config() + f'\n[gpu]\nbackend = "jetson"\nsysfs_root = "{FAKE}/root"\nnvpmodel_mode = -1\n'


def install_fake_jetson(sd: SystemdInstance) -> None:
    """A root-owned, writable copy of the Orin tree and the fake tools inside the instance."""
    shutil.copytree(FIXTURES / "sysfs" / "agx_orin", sd.path(FAKE / "root"))
    shutil.copytree(FIXTURES / "bin", sd.path(FAKE / "bin"))
    sd.path(FAKE / "state").mkdir()
    sd.write_file(FAKE / "bin" / "fake.env", f'GPU_NODE="{GPU_NODE}"\nFAKE_STATE="{FAKE}/state"\n'
                  f'MODES="0:MAXN:{TOP_HZ}"\nINITIAL_MODE=0\n')
    sd.run("chown", "-R", "root:root", str(FAKE))


@pytest.fixture
def relock_instance(service_spec: InstanceSpec, venv: Path,
                    service_read_paths: tuple[Path, ...]) -> Iterator[SystemdInstance]:
    units = {**service_spec.units, **relock_units(venv, service_read_paths), **fake_gpu_units()}
    for sd in booted(replace(service_spec, units=units), fake_gpu_config()):
        install_fake_jetson(sd)
        try:
            yield sd
        finally:
            print(sd.unit_journal("ishowttsd-relock.service"))


def devfreq(sd: SystemdInstance) -> dict[str, int]:
    return {knob: int(sd.path(GPU_NODE / knob).read_text()) for knob in ("min_freq", "max_freq", "cur_freq")}


def run_clocks_job(sd: SystemdInstance) -> dict[str, Any]:
    reply = request(sd, "/v1/jobs/clocks/run", method="POST", timeout=60)
    assert reply.status == 200, reply
    return dict(reply.json()["job"])


def metric(sd: SystemdInstance, name: str) -> float:
    text = request(sd, "/metrics", timeout=30).body
    values = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + "{")]
    return sum(values)


def test_a_drifted_lock_is_relocked_by_root_and_reported_by_the_daemon(relock_instance: SystemdInstance) -> None:
    sd = relock_instance
    start_and_wait(sd)
    assert devfreq(sd) == {"min_freq": TOP_HZ, "max_freq": TOP_HZ, "cur_freq": TOP_HZ}  # ExecStartPre=+
    assert sd.show("ishowttsd-relock.path", "ActiveState") == "active"
    assert run_clocks_job(sd)["last_status"] == "ok"

    sd.write_file(GPU_NODE / "min_freq", f"{ORIGINAL_MIN_HZ}\n")  # a governor took the lock away
    sd.write_file(GPU_NODE / "cur_freq", "306000000\n")
    drifted = run_clocks_job(sd)
    assert drifted["last_status"] == "flagged" and RELOCK_REQUESTED in drifted["last_result"]
    assert "permission denied" in drifted["last_result"]  # the daemon itself may not write devfreq

    sd.wait_for(lambda: sd.path(RESULT).exists() and not sd.path(REQUEST).exists(), 60, "the root re-lock")
    answer = json.loads(sd.path(RESULT).read_text())
    assert answer["relocked"] is True and answer["was_locked"] is False and answer["locked"] is True
    assert answer["request"]["reason"].startswith("re-apply after drift")
    assert sd.run("stat", "-c", "%u %a", RESULT).stdout.split() == ["0", "644"]  # written by root
    assert devfreq(sd) == {"min_freq": TOP_HZ, "max_freq": TOP_HZ, "cur_freq": TOP_HZ}
    assert sd.show("ishowttsd-relock.service", "Result") == "success"

    reported = run_clocks_job(sd)
    assert reported["last_status"] == "ok" and "root helper: re-lock" in reported["last_result"]
    answered = reported["details"]["root_relock"]
    assert answered["root_relocks"] == 1 and answered["request"]["id"] == answer["request"]["id"]
    assert metric(sd, "gpu_clock_drift_total") == 1


def test_relock_is_refused_without_a_running_daemon_and_stops_with_it(relock_instance: SystemdInstance) -> None:
    sd = relock_instance
    start_and_wait(sd)
    sd.systemctl("stop", SERVICE)
    assert sd.show("ishowttsd-relock.path", "ActiveState") == "inactive"  # PartOf=
    assert devfreq(sd)["min_freq"] == ORIGINAL_MIN_HZ  # ExecStopPost=+ restored the originals

    refused = sd.systemctl("start", "ishowttsd-relock.service", check=False)
    assert refused.returncode != 0
    assert devfreq(sd)["min_freq"] == ORIGINAL_MIN_HZ and not sd.path(RESULT).exists()


def test_the_relock_helper_runs_as_root_while_the_daemon_does_not(relock_instance: SystemdInstance) -> None:
    sd = relock_instance
    start_and_wait(sd)
    uid = sd.user_ids(SERVICE_USER)[0]
    assert sd.show(SERVICE, "User") == SERVICE_USER and uid != 0
    assert sd.show("ishowttsd-relock.service", "User") in ("", "root")
    assert sd.show("ishowttsd-relock.service", "NoNewPrivileges") == "yes"


@pytest.fixture
def rendered_units(tmp_path: Path) -> Path:
    for name in (SERVICE + ".service", *RELOCK_UNITS):
        text = render_service_unit((REPO / "systemd" / name).read_text(), Path(sys.prefix), read_paths=())
        (tmp_path / name).write_text(text)
    return tmp_path


def analyze(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["systemd-analyze", *args], capture_output=True, text=True, check=False, cwd=cwd)


def test_relock_units_verify_silently(rendered_units: Path) -> None:
    result = analyze("verify", "--man=no", *(str(rendered_units / name) for name in RELOCK_UNITS),
                     cwd=rendered_units)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_relock_service_exposure_is_within_its_threshold(rendered_units: Path) -> None:
    result = analyze("security", "--offline=true", f"--threshold={SECURITY_THRESHOLD}",
                     str(rendered_units / "ishowttsd-relock.service"), cwd=rendered_units)
    score = re.search(r"Overall exposure level for ishowttsd-relock.service: (\d+\.\d+)", result.stdout)
    assert result.returncode == 0 and score, result.stdout + result.stderr
    assert float(score.group(1)) * 10 <= SECURITY_THRESHOLD
