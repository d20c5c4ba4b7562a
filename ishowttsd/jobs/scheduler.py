"""JobRunner: the runbook jobs on APScheduler 3 (AsyncIOScheduler, native `async def` jobs).

Policy: coalesce missed runs into one, never two instances of a job at once (a scheduled run
that finds the job already running, e.g. started with `ishowttsctl jobs run`, is skipped), a
misfire grace per job (table.py). A job that raises is logged (event job_failed), counted
(ishowttsd_job_runs_total{result="error"}) and, for transient errors (OS/timeout/engine
unavailable), retried once after `retry_delay_s`; nothing a job does can stop the daemon.
Results live in memory and in state_dir/jobs.json (atomic), so `ishowttsctl jobs` shows them
across restarts.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.date import DateTrigger
from tzlocal import get_localzone

from ishowttsd.config import JobsConfig
from ishowttsd.engine.errors import EngineUnavailable
from ishowttsd.jobs.context import JobContext, JobOutcome
from ishowttsd.jobs.records import JOBS_FILE, JobRecords
from ishowttsd.jobs.table import JobParts, JobSpec, job_table

log = structlog.get_logger(__name__)
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (OSError, TimeoutError, EngineUnavailable)
DEFAULT_RETRY_DELAY_S = 30.0
RESULT_LABELS = {"ok": "success", "flagged": "flagged", "skipped": "skipped"}
JobRun = Callable[[], Awaitable[JobOutcome]]


class JobNotFound(KeyError):
    """No job has that id."""


class JobBusy(RuntimeError):
    """The job is running right now."""


def iso(epoch_s: float | None) -> str | None:
    if epoch_s is None:
        return None
    return dt.datetime.fromtimestamp(epoch_s).astimezone().isoformat(timespec="seconds")


class JobRunner:
    def __init__(self, ctx: JobContext, *, parts: JobParts | None = None,
                 retry_delay_s: float = DEFAULT_RETRY_DELAY_S, timezone: dt.tzinfo | None = None) -> None:
        self.ctx = ctx
        self.parts = parts or JobParts.build(ctx)
        self.specs: dict[str, JobSpec] = {spec.id: spec for spec in job_table(ctx, self.parts)}
        for directory in (ctx.state_dir, ctx.log_dir):  # systemd creates them; a plain run may not
            directory.mkdir(parents=True, exist_ok=True)
        self.records = JobRecords(ctx.state_dir / JOBS_FILE, self.specs)
        self.records.load()
        self.retry_delay_s = retry_delay_s
        self.timezone = timezone or get_localzone()
        self._locks = {job_id: asyncio.Lock() for job_id in self.specs}
        self._persist_lock = asyncio.Lock()
        self._scheduler: AsyncIOScheduler | None = None
        self._scheduled_with: JobsConfig | None = None
        ctx.status_sources.next_job = self.next_job
        ctx.status_sources.clocks_locked = self.parts.clocks.locked
        ctx.status_sources.gpu_temp_c = self.parts.sampler.max_temp_c

    # ---- lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        """Schedule every job from the current [jobs] config (call on the running event loop)."""
        jobs = self.ctx.get_config().jobs
        if not jobs.enabled:
            log.info("jobs_disabled", reason="jobs.enabled = false; `ishowttsctl jobs run ID` still works")
            return
        # job_done / job_failed replace APScheduler's two info lines per run (thousands a day at 30 s)
        logging.getLogger("apscheduler").setLevel(logging.WARNING)
        self._scheduler = AsyncIOScheduler(timezone=self.timezone,
                                           job_defaults={"coalesce": True, "max_instances": 1})
        for spec in self.specs.values():
            self._schedule(spec, jobs)
        self._scheduled_with = jobs
        self._scheduler.start()
        log.info("jobs_started", jobs={job["id"]: job["next_run"] for job in self.list_jobs()})

    def shutdown(self) -> None:
        """Stop scheduling; runs in progress are cancelled by APScheduler's executor."""
        if self._scheduler is not None and self._scheduler.running:
            self._scheduler.shutdown(wait=False)
        self._scheduler = None

    def close(self) -> None:
        """Release the GPU backend (NVML shutdown); call last, after restore_clocks_at_stop()."""
        self.shutdown()
        self.ctx.backend.close()

    def apply_config(self) -> list[str]:
        """After a reload: reschedule the jobs whose [jobs] keys changed; returns their ids."""
        new, old = self.ctx.get_config().jobs, self._scheduled_with
        if self._scheduler is None or old is None or not new.enabled:
            self.shutdown()
            self.start()
            return list(self.specs) if new.enabled else []
        changed = [spec for spec in self.specs.values()
                   if any(getattr(old, key) != getattr(new, key) for key in spec.schedule.keys)]
        for spec in changed:
            self._schedule(spec, new)
        self._scheduled_with = new
        return [spec.id for spec in changed]

    def _schedule(self, spec: JobSpec, jobs: JobsConfig) -> None:
        assert self._scheduler is not None
        trigger = spec.schedule.build(jobs)
        if trigger is None:
            if self._scheduler.get_job(spec.id):
                self._scheduler.remove_job(spec.id)
            return
        self._scheduler.add_job(self._run_scheduled, trigger, args=[spec.id], id=spec.id, name=spec.id,
                                misfire_grace_time=spec.misfire_grace_s, replace_existing=True)

    # ---- start-up and stop hooks for the daemon ------------------------------------------------
    async def lock_clocks_at_start(self) -> dict[str, Any]:
        """R1/R35, before READY: verify, lock if needed (recorded as a run of the clocks job)."""
        return await self._execute("clocks", run=self.parts.clocks.lock_at_start)

    async def restore_clocks_at_stop(self) -> dict[str, Any]:
        return await self._execute("clocks", run=self.parts.clocks.restore_at_stop)

    # ---- running -------------------------------------------------------------------------------
    async def run_now(self, job_id: str) -> dict[str, Any]:
        """Run a job now and return its record with details; JobNotFound / JobBusy."""
        if job_id not in self.specs:
            raise JobNotFound(job_id)
        if self._locks[job_id].locked():
            raise JobBusy(f"job {job_id} is running")
        return await self._execute(job_id, details=True)

    async def _run_scheduled(self, job_id: str, attempt: int = 0) -> None:
        if self._locks[job_id].locked():
            log.info("job_skipped", job=job_id, reason="already running")
            return
        await self._execute(job_id, attempt=attempt)

    async def _execute(self, job_id: str, run: JobRun | None = None, attempt: int = 0,
                       details: bool = False) -> dict[str, Any]:
        async with self._locks[job_id]:
            started, clock_start = self.ctx.clock(), time.monotonic()
            try:
                outcome = await (run or self.specs[job_id].run)()
            except Exception as exc:  # a job's failure is recorded, never propagated
                self._failed(job_id, exc, attempt, started, time.monotonic() - clock_start)
            else:
                self._finished(job_id, outcome, started, time.monotonic() - clock_start)
            view = {**self.describe(job_id, details=details), "running": False}  # this run, before any retry
        await self._persist()
        return view

    def _finished(self, job_id: str, outcome: JobOutcome, started: float, duration_s: float) -> None:
        self.records.finished(job_id, started, duration_s, outcome)
        self.ctx.metrics.observe_job_run(job_id, RESULT_LABELS[outcome.status], self.ctx.clock())
        quiet = not self.specs[job_id].on_status_line and outcome.status != "flagged"
        emit = log.debug if quiet else (log.warning if outcome.status == "flagged" else log.info)
        emit("job_done", job=job_id, status=outcome.status, result=outcome.summary,
             duration_s=round(duration_s, 3))

    def _failed(self, job_id: str, exc: Exception, attempt: int, started: float, duration_s: float) -> None:
        error = f"{type(exc).__name__}: {exc}"
        if isinstance(exc, OSError):
            self.ctx.storage_error(Path(exc.filename or self.ctx.log_dir), exc)
        retry_at = self._schedule_retry(job_id, attempt) if isinstance(exc, TRANSIENT_ERRORS) else None
        self.records.failed(job_id, started, duration_s, error, retry_at)
        self.ctx.metrics.observe_job_run(job_id, "error", self.ctx.clock())
        log.error("job_failed", job=job_id, error=error, attempt=attempt, retry_at=iso(retry_at),
                  exc_info=exc)

    def _schedule_retry(self, job_id: str, attempt: int) -> float | None:
        """One retry of a transient failure, `retry_delay_s` later (only while scheduling)."""
        if attempt > 0 or self._scheduler is None or not self._scheduler.running:
            return None
        when = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=self.retry_delay_s)
        self._scheduler.add_job(self._run_scheduled, DateTrigger(run_date=when), args=[job_id, attempt + 1],
                                id=f"{job_id}.retry", name=f"{job_id} (retry)", replace_existing=True,
                                misfire_grace_time=self.specs[job_id].misfire_grace_s)
        return when.timestamp()

    async def _persist(self) -> None:
        async with self._persist_lock:
            text = self.records.snapshot()
            try:
                await asyncio.to_thread(self.records.save, text)
            except OSError as exc:
                self.ctx.storage_error(self.records.path, exc)
                log.error("jobs_state_not_saved", path=str(self.records.path), error=str(exc))

    # ---- reading -------------------------------------------------------------------------------
    def _next_run(self, job_id: str) -> dt.datetime | None:
        job = self._scheduler.get_job(job_id) if self._scheduler is not None else None
        return job.next_run_time if job is not None else None

    def describe(self, job_id: str, details: bool = False) -> dict[str, Any]:
        spec, record, jobs = self.specs[job_id], self.records.by_id[job_id], self.ctx.get_config().jobs
        next_run = self._next_run(job_id)
        view = {"id": job_id, "description": spec.description,
                "schedule": spec.schedule.describe(jobs) if jobs.enabled else "off (jobs.enabled = false)",
                "next_run": next_run.isoformat() if next_run else None,
                "running": self._locks[job_id].locked(),
                "last_run": iso(record.last_run), "last_status": record.last_status,
                "last_result": record.last_result, "last_error": record.last_error, "runs": record.runs,
                "failures": record.failures, "last_success": iso(record.last_success),
                "last_duration_s": record.last_duration_s, "retry_at": iso(record.retry_at)}
        return {**view, "details": record.last_details} if details else view

    def list_jobs(self) -> list[dict[str, Any]]:
        return [self.describe(job_id) for job_id in self.specs]

    def next_job(self) -> tuple[str, dt.datetime] | None:
        """The next daily/weekly/monthly job for the STATUS= line (not the every-few-seconds ones)."""
        upcoming = [(when, job_id) for job_id, spec in self.specs.items()
                    if spec.on_status_line and (when := self._next_run(job_id)) is not None]
        if not upcoming:
            return None
        when, job_id = min(upcoming)
        return job_id, when

    def status_summary(self) -> dict[str, Any]:
        """A compact "jobs" section for /v1/status."""
        upcoming = self.next_job()
        records = self.records.by_id.items()
        by_status = {status: sorted(job_id for job_id, r in records if r.last_status == status)
                     for status in ("error", "flagged")}
        return {"enabled": self._scheduler is not None,
                "next": f"{upcoming[0]} {upcoming[1].isoformat()}" if upcoming else None,
                "failing": by_status["error"], "flagged": by_status["flagged"]}
