"""JobRunner on a real AsyncIOScheduler: schedule, run now, failures, retries, persistence, reload."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from structlog.testing import capture_logs
from test_jobs_support import Rig, config_store, make_rig

from ishowttsd.jobs.context import JobOutcome
from ishowttsd.jobs.scheduler import JobBusy, JobNotFound, JobRunner

ALL_JOBS = {"clocks", "sampler", "leak", "rtf_watch", "health", "backup", "artefacts", "updates", "benchmark",
            "nfe_sweep", "quality", "recycle"}


async def wait_for(condition: Callable[[], bool], timeout_s: float = 2.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def replace_run(runner: JobRunner, job_id: str, run: Callable[[], object]) -> None:
    runner.specs[job_id] = dataclasses.replace(runner.specs[job_id], run=run)  # type: ignore[arg-type]


@pytest.fixture
async def rig(tmp_path: Path) -> Rig:
    return make_rig(tmp_path, store=config_store(tmp_path))


@pytest.fixture
async def runner(rig: Rig) -> AsyncIterator[JobRunner]:
    runner = JobRunner(rig.ctx, retry_delay_s=0.05)
    yield runner
    runner.shutdown()
    await asyncio.sleep(0)  # AsyncIOScheduler shuts down on the loop


async def test_start_schedules_every_job_from_the_config(runner: JobRunner) -> None:
    runner.start()
    jobs = {job["id"]: job for job in runner.list_jobs()}
    assert set(jobs) == ALL_JOBS
    assert jobs["recycle"]["next_run"] is None and jobs["recycle"]["schedule"] == "daily off"
    assert all(job["next_run"] for job_id, job in jobs.items() if job_id != "recycle")
    assert dt.datetime.fromisoformat(jobs["health"]["next_run"]).strftime("%H:%M") == "09:00"
    assert jobs["benchmark"]["schedule"] == "weekly sun 03:00" and jobs["sampler"]["schedule"] == "every 30 s"
    assert dt.datetime.fromisoformat(jobs["updates"]["next_run"]).strftime("%a %H:%M") == "Mon 04:00"


async def test_daily_recycle_gets_its_jitter(rig: Rig) -> None:
    rig.holder.update_jobs(recycle_at="05:10", recycle_jitter_minutes=10)
    runner = JobRunner(rig.ctx)
    runner.start()
    try:
        job = runner._scheduler.get_job("recycle")  # type: ignore[union-attr]
        assert job.trigger.jitter == 600 and runner.describe("recycle")["schedule"] == "daily 05:10"
    finally:
        runner.shutdown()
        await asyncio.sleep(0)


async def test_run_now_records_counts_and_persists_across_restarts(rig: Rig, runner: JobRunner) -> None:
    job = await runner.run_now("backup")
    assert job["last_status"] == "ok" and job["runs"] == 1 and job["details"]["backup"]["reason"] == "scheduled"
    assert job["running"] is False
    assert rig.value("ishowttsd_job_runs_total", job="backup", result="success") == 1.0
    assert rig.value("ishowttsd_job_last_success_timestamp_seconds", job="backup") == rig.now[0]
    stored = json.loads((rig.ctx.state_dir / "jobs.json").read_text())
    assert stored["jobs"]["backup"]["runs"] == 1
    restarted = JobRunner(rig.ctx).describe("backup")
    assert restarted["runs"] == 1 and restarted["last_result"] == job["last_result"]


async def test_unknown_job(runner: JobRunner) -> None:
    with pytest.raises(JobNotFound):
        await runner.run_now("defrag")


async def test_a_failing_job_is_logged_counted_and_the_loop_goes_on(rig: Rig, runner: JobRunner) -> None:
    async def broken() -> JobOutcome:
        raise ValueError("bad row")

    replace_run(runner, "benchmark", broken)
    runner.start()
    with capture_logs() as logs:
        job = await runner.run_now("benchmark")
    assert job["last_status"] == "error" and job["failures"] == 1 and job["retry_at"] is None
    assert job["last_error"] == "ValueError: bad row"
    assert rig.value("ishowttsd_job_runs_total", job="benchmark", result="error") == 1.0
    [failed] = [entry for entry in logs if entry["event"] == "job_failed"]
    assert failed["job"] == "benchmark" and failed["log_level"] == "error"
    assert (await runner.run_now("backup"))["last_status"] == "ok"  # the daemon side is fine
    assert runner.status_summary()["failing"] == ["benchmark"]


async def test_a_transient_failure_is_retried_once(rig: Rig, runner: JobRunner) -> None:
    attempts: list[int] = []

    async def flaky() -> JobOutcome:
        attempts.append(1)
        if len(attempts) == 1:
            raise OSError("disk busy")
        return JobOutcome("ok", "fine the second time")

    replace_run(runner, "updates", flaky)
    runner.start()
    first = await runner.run_now("updates")
    assert first["last_status"] == "error" and first["retry_at"] is not None
    await wait_for(lambda: runner.describe("updates")["runs"] == 2)
    assert runner.describe("updates")["last_status"] == "ok" and runner.describe("updates")["failures"] == 1


async def test_a_transient_failure_is_retried_only_once(runner: JobRunner) -> None:
    async def down() -> JobOutcome:
        raise TimeoutError("index unreachable")

    replace_run(runner, "updates", down)
    runner.start()
    await runner.run_now("updates")
    await wait_for(lambda: runner.describe("updates")["runs"] == 2)
    await asyncio.sleep(0.2)
    assert runner.describe("updates")["runs"] == 2 and runner.describe("updates")["retry_at"] is None


async def test_the_scheduler_fires_jobs_through_the_same_wrapper(runner: JobRunner) -> None:
    runner.start()
    runner._scheduler.get_job("backup").modify(  # type: ignore[union-attr]
        next_run_time=dt.datetime.now(dt.timezone.utc))
    runner._scheduler.wakeup()  # type: ignore[union-attr]
    await wait_for(lambda: runner.describe("backup")["runs"] == 1)
    assert runner.describe("backup")["last_status"] == "ok"
    assert runner.describe("backup")["next_run"] is not None  # rescheduled for tomorrow


async def test_a_job_never_runs_twice_at_once(runner: JobRunner) -> None:
    release = asyncio.Event()

    async def slow() -> JobOutcome:
        await release.wait()
        return JobOutcome("ok", "done")

    replace_run(runner, "quality", slow)
    first = asyncio.create_task(runner.run_now("quality"))
    await wait_for(lambda: runner.describe("quality")["running"])
    with pytest.raises(JobBusy):
        await runner.run_now("quality")
    with capture_logs() as logs:
        await runner._run_scheduled("quality")  # a scheduled fire meanwhile is skipped
    assert [entry["event"] for entry in logs] == ["job_skipped"]
    release.set()
    assert (await first)["runs"] == 1


async def test_status_sources_are_wired(rig: Rig, runner: JobRunner) -> None:
    runner.start()
    name, when = rig.sources.next_job()  # type: ignore[misc]
    daily = {job["id"]: job["next_run"] for job in runner.list_jobs() if runner.specs[job["id"]].on_status_line}
    assert when.isoformat() == min(value for value in daily.values() if value)
    assert name not in {"sampler", "leak", "clocks", "rtf_watch"}
    await runner.run_now("sampler")
    assert rig.sources.gpu_temp_c() == 61.0
    await runner.lock_clocks_at_start()
    assert rig.sources.clocks_locked() is True and runner.describe("clocks")["runs"] == 1


async def test_reload_reschedules_only_what_changed(rig: Rig, runner: JobRunner) -> None:
    runner.start()
    before = runner.describe("backup")["next_run"]
    rig.holder.update_jobs(health_at="07:15")
    assert runner.apply_config() == ["health"]
    assert dt.datetime.fromisoformat(runner.describe("health")["next_run"]).strftime("%H:%M") == "07:15"
    assert runner.describe("backup")["next_run"] == before
    rig.holder.update_jobs(enabled=False)
    assert runner.apply_config() == []
    assert runner.describe("health")["next_run"] is None
    assert runner.describe("health")["schedule"] == "off (jobs.enabled = false)"
    rig.holder.update_jobs(enabled=True)
    assert set(runner.apply_config()) == ALL_JOBS and runner.describe("health")["next_run"]


async def test_disabled_jobs_can_still_be_run_by_hand(rig: Rig) -> None:
    rig.holder.update_jobs(enabled=False)
    runner = JobRunner(rig.ctx)
    runner.start()
    assert runner.next_job() is None and runner.status_summary()["enabled"] is False
    assert (await runner.run_now("backup"))["last_status"] == "ok"


async def test_a_corrupt_state_file_starts_fresh(rig: Rig) -> None:
    rig.ctx.state_dir.mkdir(parents=True, exist_ok=True)
    (rig.ctx.state_dir / "jobs.json").write_text("{not json")
    with capture_logs() as logs:
        runner = JobRunner(rig.ctx)
    assert runner.describe("backup")["runs"] == 0
    assert [entry["event"] for entry in logs] == ["jobs_state_unreadable"]
