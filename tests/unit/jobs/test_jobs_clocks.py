"""Clock job (R1, R5, R35): lock before READY, read back, re-apply on drift, restore on stop."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from test_jobs_support import FakeBackend, make_rig

from ishowttsd.hw.base import ClockState
from ishowttsd.hw.clockhelper import RelockFiles, relock
from ishowttsd.hw.null import NullBackend
from ishowttsd.jobs.clocks import NEEDS_ROOT, RELOCK_REQUESTED, ClockKeeper, clock_pairs, drift_of


async def test_lock_at_start_leaves_a_lock_the_root_helper_applied(tmp_path: Path) -> None:
    rig = make_rig(tmp_path, backend=FakeBackend(locked=True, privileged=False))
    keeper = ClockKeeper(rig.ctx)
    outcome = await keeper.lock_at_start()
    assert outcome.status == "ok"
    assert "lock" not in rig.backend.calls
    assert keeper.locked() is True and rig.value("gpu_clock_locked", device="gpu0") == 1.0
    assert (await keeper.restore_at_stop()).status == "skipped"  # ExecStopPost=+ restores the helper's lock
    assert "restore" not in rig.backend.calls


async def test_lock_at_start_applies_when_privileged_and_restores_at_stop(tmp_path: Path) -> None:
    rig = make_rig(tmp_path, backend=FakeBackend(locked=False, privileged=True))
    keeper = ClockKeeper(rig.ctx)
    outcome = await keeper.lock_at_start()
    assert outcome.status == "ok" and rig.backend.calls.count("lock") == 1
    assert keeper.locked() is True and not rig.sources.degraded
    assert (await keeper.restore_at_stop()).status == "ok"
    assert rig.backend.calls[-1] == "restore" and rig.backend.locked is False


async def test_lock_at_start_unprivileged_reports_permission_denied_plainly(tmp_path: Path) -> None:
    rig = make_rig(tmp_path, backend=FakeBackend(locked=False, privileged=False))
    keeper = ClockKeeper(rig.ctx)
    outcome = await keeper.lock_at_start()
    assert outcome.status == "flagged"
    assert "permission denied" in outcome.summary and NEEDS_ROOT in outcome.summary
    expected = "clocks: clocks not locked: permission denied"
    assert any(entry.startswith(expected) for entry in rig.sources.degraded)
    assert keeper.locked() is False and rig.value("gpu_clock_locked", device="gpu0") == 0.0


async def test_lock_disabled_in_config_touches_nothing(tmp_path: Path) -> None:
    rig = make_rig(tmp_path, gpu={"lock_clocks": False})
    keeper = ClockKeeper(rig.ctx)
    assert (await keeper.lock_at_start()).status == "skipped"
    assert (await keeper.check()).status == "skipped"
    assert rig.backend.calls == []


async def test_no_gpu_is_not_applicable_and_not_degraded(tmp_path: Path) -> None:
    rig = make_rig(tmp_path, backend=NullBackend())
    keeper = ClockKeeper(rig.ctx)
    assert (await keeper.lock_at_start()).status == "skipped"
    assert (await keeper.check()).status == "skipped"
    assert keeper.locked() is None and rig.sources.degraded == []


async def test_check_in_lock_is_ok_and_counts_no_drift(tmp_path: Path) -> None:
    rig = make_rig(tmp_path, backend=FakeBackend(locked=True))
    keeper = ClockKeeper(rig.ctx)
    assert (await keeper.check()).status == "ok"
    assert rig.value("gpu_clock_drift_total", device="gpu0") is None and keeper.track.drift_count == 0


async def test_drift_is_counted_and_reapplied(tmp_path: Path) -> None:
    rig = make_rig(tmp_path, backend=FakeBackend(locked=True, privileged=True))
    keeper = ClockKeeper(rig.ctx)
    await keeper.check()
    rig.backend.locked = False  # something reset the clocks
    outcome = await keeper.check()
    assert outcome.status == "ok" and "re-apply" in outcome.summary
    assert rig.backend.calls.count("lock") == 1 and rig.backend.locked is True
    assert rig.value("gpu_clock_drift_total", device="gpu0") == 1.0
    assert outcome.details["drift_count"] == 1 and "gpu0.sm_clock_mhz" in outcome.details["drift"]


async def test_drift_without_root_asks_root_and_gives_up_after_the_bounded_retries(tmp_path: Path) -> None:
    rig = make_rig(tmp_path, backend=FakeBackend(locked=False, privileged=False))
    files = RelockFiles(tmp_path / "run")
    files.request_path.parent.mkdir()
    keeper = ClockKeeper(rig.ctx, files)
    outcomes = []
    for _ in range(5):
        rig.now[0] += 300
        outcomes.append(await keeper.check())
    assert [o.status for o in outcomes] == ["flagged"] * 5
    assert all(RELOCK_REQUESTED in o.summary and "permission denied" in o.summary for o in outcomes[:3])
    assert "stopped re-applying" in outcomes[3].summary
    assert rig.backend.calls.count("lock") == 3  # bounded: no fighting every 5 minutes
    assert rig.value("gpu_clock_drift_total", device="gpu0") == 5.0
    assert any(entry.startswith("clocks: ") for entry in rig.sources.degraded)
    assert "no answer" in outcomes[1].details["root_relock"]["message"]  # no path unit here
    rig.backend.locked = True  # the root helper re-locked at a restart of the service
    assert (await keeper.check()).status == "ok" and rig.sources.degraded == []


def answer_as_root(files: RelockFiles, backend: FakeBackend) -> dict[str, Any]:
    """What ishowttsd-relock.service does, through the same files: relock with root rights."""
    request = files.read_request()
    backend.privileged = True
    record = {"action": "relock", "backend": backend.name, **asdict(relock(backend)), "request": request}
    backend.privileged = False
    files.write_result(record)
    files.clear_request(request)
    return record


async def test_drift_is_relocked_by_the_root_helper_and_the_next_check_reports_it(tmp_path: Path) -> None:
    rig = make_rig(tmp_path, backend=FakeBackend(locked=True, privileged=False))
    files = RelockFiles(tmp_path / "run")
    files.request_path.parent.mkdir()
    keeper = ClockKeeper(rig.ctx, files)
    assert (await keeper.check()).status == "ok" and not files.request_path.exists()
    rig.backend.locked = False

    drifted = await keeper.check()
    request = json.loads(files.request_path.read_text())
    assert drifted.status == "flagged" and RELOCK_REQUESTED in drifted.summary
    assert request["reason"].startswith("re-apply after drift: gpu0.sm_clock_mhz 1980→1410")
    assert drifted.details["relock_request"] == request and keeper.pending_request == request

    answer = answer_as_root(files, rig.backend)
    assert answer["relocked"] is True and not files.request_path.exists()
    rig.now[0] += 300
    after = await keeper.check()
    assert after.status == "ok" and "root helper: re-lock: locked" in after.summary
    assert after.details["root_relock"]["request"]["id"] == request["id"]
    assert after.details["root_relock"]["root_relocks"] == keeper.root_relocks == 1
    assert keeper.pending_request is None and rig.sources.degraded == []
    assert rig.value("gpu_clock_drift_total", device="gpu0") == 1.0 and keeper.track.reapply_count == 1
    assert "root_relock" not in (await keeper.check()).details  # an answer is reported once


async def test_an_answer_to_another_request_is_not_taken_for_ours(tmp_path: Path) -> None:
    rig = make_rig(tmp_path, backend=FakeBackend(locked=False, privileged=False))
    files = RelockFiles(tmp_path / "run")
    files.request_path.parent.mkdir()
    files.write_result({"request": {"id": "older"}, "ok": True, "relocked": True, "message": "old"})
    keeper = ClockKeeper(rig.ctx, files)
    await keeper.check()
    outcome = await keeper.check()
    assert outcome.details["root_relock"]["pending"] is True and keeper.root_relocks == 0


async def test_a_request_that_cannot_be_written_is_reported(tmp_path: Path) -> None:
    rig = make_rig(tmp_path, backend=FakeBackend(locked=False, privileged=False))
    keeper = ClockKeeper(rig.ctx, RelockFiles(tmp_path / "missing-runtime-dir"))
    outcome = await keeper.check()
    assert outcome.status == "flagged" and "cannot write" in outcome.summary
    assert keeper.pending_request is None


async def test_health_relock_without_root_asks_root(tmp_path: Path) -> None:
    rig = make_rig(tmp_path, backend=FakeBackend(locked=False, privileged=False))
    files = RelockFiles(tmp_path)
    text = await ClockKeeper(rig.ctx, files).relock()
    assert RELOCK_REQUESTED in text and json.loads(files.request_path.read_text())["reason"] == "health re-lock"


def test_request_files_live_next_to_the_configured_socket(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    assert ClockKeeper(rig.ctx).relock_files.request_path == Path("/run/ishowttsd/relock-request")


async def test_start_up_lock_does_not_ask_root_again(tmp_path: Path) -> None:
    """ExecStartPre=+ just tried as root; the start-up check reports, it does not re-ask."""
    rig = make_rig(tmp_path, backend=FakeBackend(locked=False, privileged=False))
    files = RelockFiles(tmp_path)
    outcome = await ClockKeeper(rig.ctx, files).lock_at_start()
    assert NEEDS_ROOT in outcome.summary and not files.request_path.exists()


async def test_relock_for_the_health_job(tmp_path: Path) -> None:
    rig = make_rig(tmp_path, backend=FakeBackend(locked=False, privileged=True))
    text = await ClockKeeper(rig.ctx).relock()
    assert "clocks locked" in text and rig.backend.locked is True


def test_clock_pairs_read_nvml_and_jetson_details() -> None:
    nvml = {"GPU-0": {"target_mhz": 1980, "sm_clock_mhz": 1410, "missing": {}}}
    jetson = {"devfreq": "17000000.ga10b", "target_hz": 1300500000, "min_hz": 306000000,
              "max_hz": 1300500000, "cur_hz": 306000000}
    assert clock_pairs(nvml) == ({"GPU-0.sm_clock_mhz": 1980}, {"GPU-0.sm_clock_mhz": 1410})
    expected, observed = clock_pairs(jetson)
    assert expected == {"min_hz": 1300500000, "max_hz": 1300500000, "cur_hz": 1300500000}
    assert observed["min_hz"] == 306000000


def test_drift_follows_the_backend_verdict() -> None:
    lost = ClockState(locked=False, details={"target_hz": 100, "min_hz": 50, "max_hz": 100, "cur_hz": 50})
    assert set(drift_of(lost).fields) == {"min_hz", "cur_hz"}
    assert drift_of(ClockState(locked=False, details={"power_mode": "x"})).fields == {"locked": (1.0, 0.0)}
    idle = ClockState(locked=None, details={"g": {"target_mhz": 1980, "sm_clock_mhz": 210}})
    assert not drift_of(idle).drifted  # an idle GPU below target is not drift (the backend said so)
