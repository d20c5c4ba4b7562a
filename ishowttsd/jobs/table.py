"""The job table: id → schedule (from [jobs] config) → function. Data, not if-chains.

Each Schedule names the [jobs] keys it is built from, so a reload reschedules exactly the jobs
whose keys changed. Times are local wall-clock time ("HH:MM"); weekdays are mon..sun.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from ishowttsd.config import JobsConfig
from ishowttsd.jobs.artefacts import run_artefacts
from ishowttsd.jobs.backup import run_backup
from ishowttsd.jobs.benchmark import BenchmarkJob
from ishowttsd.jobs.clocks import ClockKeeper
from ishowttsd.jobs.context import JobContext, JobOutcome
from ishowttsd.jobs.health import HealthCheck
from ishowttsd.jobs.leak import LeakWatch
from ishowttsd.jobs.quality import QualityJob
from ishowttsd.jobs.recycle import Recycler
from ishowttsd.jobs.sampler import Sampler
from ishowttsd.jobs.updates import UpdateChecker, run_updates

ARTEFACTS_AT = "04:30"
INTERVAL_GRACE_S = 30
CRON_GRACE_S = 3600  # a daily job delayed by a busy loop or a clock step still runs within the hour


def _hour_minute(text: str) -> dict[str, int]:
    hour, minute = text.split(":")
    return {"hour": int(hour), "minute": int(minute)}


@dataclass(frozen=True)
class Schedule:
    keys: tuple[str, ...]
    build: Callable[[JobsConfig], BaseTrigger | None]
    describe: Callable[[JobsConfig], str]


def every(key: str, scale: float = 1.0, phase: float = 0.0) -> Schedule:
    """Every jobs.<key> × scale seconds; phase shifts the first run by that share of the interval."""
    def build(jobs: JobsConfig) -> BaseTrigger:
        seconds = getattr(jobs, key) * scale
        start = dt.datetime.now().astimezone() + dt.timedelta(seconds=seconds * (1 + phase))
        return IntervalTrigger(seconds=seconds, start_date=start)

    return Schedule((key,), build, lambda jobs: f"every {getattr(jobs, key) * scale:g} s")


def daily(at_key: str, jitter_key: str | None = None) -> Schedule:
    """Daily at jobs.<at_key> ("" = off); jitter_key: random delay of up to that many minutes."""
    def build(jobs: JobsConfig) -> BaseTrigger | None:
        at = getattr(jobs, at_key)
        jitter = getattr(jobs, jitter_key) * 60 if jitter_key else None
        return CronTrigger(**_hour_minute(at), jitter=jitter or None) if at else None

    keys = (at_key, jitter_key) if jitter_key else (at_key,)
    return Schedule(keys, build, lambda jobs: f"daily {getattr(jobs, at_key) or 'off'}")


def daily_fixed(at: str) -> Schedule:
    return Schedule((), lambda jobs: CronTrigger(**_hour_minute(at)), lambda jobs: f"daily {at}")


def _on_day(field: str, day_key: str, at_key: str, text: str) -> Schedule:
    """Cron on a day (`field` = day_of_week or day) from jobs.<day_key>, at jobs.<at_key>."""
    def build(jobs: JobsConfig) -> BaseTrigger:
        return CronTrigger(**{field: getattr(jobs, day_key)}, **_hour_minute(getattr(jobs, at_key)))

    return Schedule((day_key, at_key), build,
                    lambda jobs: f"{text} {getattr(jobs, day_key)} {getattr(jobs, at_key)}")


def weekly(day_key: str, at_key: str) -> Schedule:
    return _on_day("day_of_week", day_key, at_key, "weekly")


def monthly(day_key: str, at_key: str) -> Schedule:
    return _on_day("day", day_key, at_key, "monthly day")


@dataclass(frozen=True)
class JobSpec:
    id: str
    description: str
    schedule: Schedule
    run: Callable[[], Awaitable[JobOutcome]]
    misfire_grace_s: int = CRON_GRACE_S
    on_status_line: bool = True  # shown as "next job: ..." (not the every-few-seconds ones)


def frequent(job_id: str, description: str, schedule: Schedule,
             run: Callable[[], Awaitable[JobOutcome]]) -> JobSpec:
    """A job that runs every few seconds/minutes: short misfire grace, not on the STATUS= line."""
    return JobSpec(job_id, description, schedule, run, INTERVAL_GRACE_S, on_status_line=False)


@dataclass(frozen=True)
class JobParts:
    """The job objects, built once per daemon; they keep state between runs."""

    clocks: ClockKeeper
    sampler: Sampler
    recycler: Recycler
    leak: LeakWatch
    health: HealthCheck
    benchmark: BenchmarkJob
    quality: QualityJob
    updates: UpdateChecker

    @classmethod
    def build(cls, ctx: JobContext, updates: UpdateChecker | None = None) -> JobParts:
        clocks, sampler, engine_lock = ClockKeeper(ctx), Sampler(ctx), asyncio.Lock()
        recycler = Recycler(ctx, sampler)
        leak = LeakWatch(ctx, sampler, recycler)
        return cls(clocks, sampler, recycler, leak, HealthCheck(ctx, clocks, sampler, leak, recycler),
                   BenchmarkJob(ctx, engine_lock), QualityJob(ctx, engine_lock), updates or UpdateChecker())


def job_table(ctx: JobContext, parts: JobParts) -> list[JobSpec]:
    return [
        frequent("clocks", "R5: read the GPU clock lock back, re-apply on drift",
                 every("clock_check_minutes", 60), parts.clocks.check),
        frequent("sampler", "R2 R7 R19: GPU, host and worker memory gauges; memory history",
                 every("sample_interval_s"), parts.sampler.run),
        frequent("leak", "R25: memory trend of the worker; recycle it on a leak",
                 every("sample_interval_s", phase=0.5), parts.leak.run),
        frequent("rtf_watch", "R22: RTF p95 of recent engine jobs; diagnose and act on a breach",
                 every("clock_check_minutes", 60), parts.health.watch),
        JobSpec("health", "R6 R8 R9 R22: daily health report", daily("health_at"), parts.health.daily),
        JobSpec("backup", "R32: config backup", daily("backup_at"), lambda: run_backup(ctx)),
        JobSpec("artefacts", "R13 R14: archive past months, delete expired archives",
                daily_fixed(ARTEFACTS_AT), lambda: run_artefacts(ctx)),
        JobSpec("updates", "R15 R16 R20: report outdated torch/f5-tts/vocos/deps",
                weekly("update_check_day", "update_check_at"), lambda: run_updates(ctx, parts.updates)),
        JobSpec("benchmark", "R10 R12: weekly benchmark, regression check",
                weekly("benchmark_day", "benchmark_at"), parts.benchmark.weekly),
        JobSpec("nfe_sweep", "R17: monthly benchmark over NFE 8/12/16/32",
                monthly("benchmark_monthly_day", "benchmark_at"), parts.benchmark.sweep),
        JobSpec("quality", "R21 R23: monthly quality check NFE 8 vs 32",
                monthly("benchmark_monthly_day", "benchmark_at"), parts.quality.run),
        JobSpec("recycle", "R25: optional daily engine recycle with jitter",
                daily("recycle_at", "recycle_jitter_minutes"), parts.recycler.scheduled),
    ]
