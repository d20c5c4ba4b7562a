"""Health job (R6, R8, R9, R22): daily report file, RTF breach → diagnose → act, recorded."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from test_jobs_support import FakeBackend, FakeEngine, Rig, gpu_sample, make_rig

from ishowttsd.jobs.clocks import ClockKeeper
from ishowttsd.jobs.health import (
    ACT_COOLDOWN_S,
    WATCH_MIN_JOBS,
    HealthCheck,
    compile_state,
    histogram_quantile,
    memory_total,
    synthesis_requests,
    worst_compile,
)
from ishowttsd.jobs.leak import LeakWatch
from ishowttsd.jobs.recycle import Recycler
from ishowttsd.jobs.sampler import Sampler


def health(rig: Rig) -> HealthCheck:
    sampler = Sampler(rig.ctx)
    recycler = Recycler(rig.ctx, sampler)
    leak = LeakWatch(rig.ctx, sampler, recycler)
    return HealthCheck(rig.ctx, ClockKeeper(rig.ctx), sampler, leak, recycler)


def engine_jobs(rig: Rig, count: int, rtf: float) -> None:
    for _ in range(count):
        rig.metrics.observe_engine_job(audio_s=4.0, compute_s=4.0 * rtf, queue_wait_s=0.01)


async def test_healthy_day_writes_an_ok_report(tmp_path: Path) -> None:
    rig = make_rig(tmp_path, backend=FakeBackend(locked=True))
    engine_jobs(rig, 50, rtf=0.12)
    outcome = await health(rig).daily()
    assert outcome.status == "ok" and outcome.summary == "all good"
    date = dt.datetime.fromtimestamp(rig.now[0]).date().isoformat()
    report = json.loads((rig.ctx.log_dir / "health" / f"{date}.json").read_text())
    assert report["ok"] is True and report["clocks"]["locked"] is True
    assert 0.1 < report["rtf"]["p95"] <= 0.15 and report["rtf_jobs_in_window"] == 50
    assert report["actions_taken"] == [] and report["compile"]["state"] == "eager"


async def test_breach_with_lost_lock_is_relocked_and_recorded(tmp_path: Path) -> None:
    rig = make_rig(tmp_path, backend=FakeBackend(locked=False, privileged=True))
    engine_jobs(rig, 40, rtf=0.6)
    outcome = await health(rig).daily()
    assert outcome.status == "flagged" and "gpu clocks not locked" in outcome.summary
    report = outcome.details
    assert report["rtf"]["breach"] is True and report["diagnosis"]["actions"] == ["relock"]
    [taken] = report["actions_taken"]
    assert taken["action"] == "relock" and "clocks locked" in taken["result"]
    assert rig.backend.locked is True and rig.engine.recycles == []
    assert any(entry.startswith("rtf: rtf p95") for entry in rig.sources.degraded)
    saved = json.loads(next((rig.ctx.log_dir / "health").glob("*.json")).read_text())
    assert saved["actions_taken"] == report["actions_taken"]


async def test_report_counts_failures_by_cause_since_the_last_report(tmp_path: Path) -> None:
    rig = make_rig(tmp_path, backend=FakeBackend(locked=True))
    for status in (200, 200, 503):
        rig.metrics.observe_request("/v1/tts", status)
    rig.metrics.observe_request("/metrics", 200)  # scrapes are not synthesis requests
    rig.metrics.observe_error("engine_unavailable")
    check = health(rig)
    first = (await check.daily()).details
    assert first["requests"]["total"] == 3 and first["failures"]["by_cause"] == {"engine_unavailable": 1}
    assert "1 failed requests (engine_unavailable)" in first["problems"]
    second = (await check.daily()).details
    assert second["requests"]["total"] == 0 and second["failures"]["total"] == 0


async def test_compile_fallback_and_heat_are_reported(tmp_path: Path) -> None:
    hot = gpu_sample(temperatures={"gpu": 86.0}, throttle_reasons=["sw_thermal_slowdown"])
    engine = FakeEngine(compile_error="InductorError: boom")
    rig = make_rig(tmp_path, backend=FakeBackend(locked=True, gpus=[hot]), engine=engine)
    engine_jobs(rig, 30, rtf=0.9)
    report = (await health(rig).daily()).details
    assert report["compile"] == {"state": "eager_fallback", "error": "InductorError: boom"}
    assert report["diagnosis"]["actions"] == ["report_thermal", "report_compile_fallback"]
    assert "check cooling" in report["actions_taken"][0]["result"] and engine.recycles == []


async def test_watch_waits_for_enough_jobs_then_recycles_an_unexplained_breach(tmp_path: Path) -> None:
    rig = make_rig(tmp_path, backend=FakeBackend(locked=True))
    check = health(rig)
    engine_jobs(rig, WATCH_MIN_JOBS - 1, rtf=0.8)
    assert (await check.watch()).status == "skipped"
    engine_jobs(rig, 1, rtf=0.8)
    outcome = await check.watch()
    assert outcome.status == "flagged" and outcome.details["actions"][0]["action"] == "recycle"
    assert rig.engine.recycles[0][0].startswith("health (rtf watch")
    engine_jobs(rig, WATCH_MIN_JOBS, rtf=0.8)
    rig.now[0] += 60
    again = await check.watch()  # still breaching a minute later: no second recycle (cooldown)
    assert "cooldown" in again.details["actions"][0]["result"] and len(rig.engine.recycles) == 1
    rig.now[0] += ACT_COOLDOWN_S
    engine_jobs(rig, WATCH_MIN_JOBS, rtf=0.1)
    assert (await check.watch()).status == "ok" and rig.sources.degraded == []


def test_histogram_quantile_interpolates_like_prometheus() -> None:
    buckets = [(0.1, 0.0), (0.2, 50.0), (0.5, 100.0), (float("inf"), 100.0)]
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.2)
    assert histogram_quantile(0.95, buckets) == pytest.approx(0.2 + 0.3 * 0.9)
    assert histogram_quantile(0.95, [(0.1, 0.0), (float("inf"), 0.0)]) is None
    assert histogram_quantile(0.99, [(0.5, 1.0), (float("inf"), 10.0)]) == 0.5  # beyond the last bound


def test_compile_state_and_request_counting_are_pure() -> None:
    assert compile_state({"compiled": True}) == "compiled"
    assert compile_state({"compiled": False, "compile_error": "x"}) == "eager_fallback"
    assert compile_state({}) == "eager"
    counts = {"/v1/tts": {"200": 2}, "/v1/audio/speech": {"429": 1}, "/healthz": {"200": 9}}
    assert synthesis_requests(counts) == 3


def test_several_workers_are_summed_and_the_worst_compile_state_is_reported() -> None:
    info = {"compiled": True, "compile_error": "", "worker_rss_bytes": 100, "cuda_allocated_bytes": 7,
            "workers": [
                {"pid": 10, "compiled": True, "compile_error": "", "worker_rss_bytes": 100,
                 "cuda_allocated_bytes": 7},
                {"pid": 11, "compiled": False, "compile_error": "inductor exploded", "worker_rss_bytes": 250,
                 "cuda_allocated_bytes": None},
                {"pid": None, "compiled": False, "compile_error": "", "worker_rss_bytes": None},  # starting
            ]}
    assert memory_total(info, "worker_rss_bytes") == 350  # not worker 0's 100
    assert memory_total(info, "cuda_allocated_bytes") == 7
    assert memory_total(info, "cuda_reserved_bytes") is None
    assert worst_compile(info) == ("eager_fallback", "inductor exploded")
    one = {"pid": 5, "compiled": True, "worker_rss_bytes": 40}  # no workers list: the top level is the worker
    assert memory_total(one, "worker_rss_bytes") == 40 and worst_compile(one) == ("compiled", "")
