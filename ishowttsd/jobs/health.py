"""Health (R6, R8, R9, R22): the daily report, and the RTF watch that acts on a breach.

RTF p95 comes from the tts_rtf histogram (every engine job, compute time only), as the change
since the previous run: the daily report covers the day, the watch the last few minutes (it waits
for at least WATCH_MIN_JOBS jobs). On a breach decide.health.diagnose_rtf_breach names the causes
and actions; this module acts (re-lock through the clock keeper, recycle through the recycler),
at most once per ACT_COOLDOWN_S, and records what it did in the report.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import structlog

from ishowttsd.decide.health import HealthInputs, daily_report, diagnose_rtf_breach
from ishowttsd.fsutil import atomic_write_text
from ishowttsd.hw.base import GpuSample
from ishowttsd.jobs.clocks import ClockKeeper
from ishowttsd.jobs.context import JobContext, JobOutcome, set_degraded
from ishowttsd.jobs.leak import LeakWatch
from ishowttsd.jobs.recycle import Recycler
from ishowttsd.jobs.sampler import Sampler, max_temperature
from ishowttsd.metrics import Metrics

log = structlog.get_logger(__name__)
HEALTH_DIR = "health"
RTF_QUANTILE = 0.95
WATCH_MIN_JOBS = 20
ACT_COOLDOWN_S = 3600.0
SYNTHESIS_ROUTES = frozenset({"/v1/tts", "/v1/audio/speech"})
DEGRADED_KEY = "rtf"
Buckets = dict[float, float]  # upper bound → cumulative count


# --- pure helpers ------------------------------------------------------------------------------
def histogram_quantile(q: float, buckets: Sequence[tuple[float, float]]) -> float | None:
    """Prometheus-style quantile from cumulative (upper bound, count) pairs sorted by bound."""
    total = buckets[-1][1] if buckets else 0.0
    if total <= 0:
        return None
    rank, lower, below = q * total, 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return lower
            share = (rank - below) / (count - below) if count > below else 1.0
            return lower + (bound - lower) * share
        lower, below = bound, count
    return lower


def bucket_delta(now: Buckets, before: Buckets) -> list[tuple[float, float]]:
    return sorted((bound, count - before.get(bound, 0.0)) for bound, count in now.items())


def compile_state(info: Mapping[str, Any]) -> str:
    """decide.health's compile state from the engine's info() (or one worker's entry of it)."""
    if info.get("compiled"):
        return "compiled"
    return "eager_fallback" if info.get("compile_error") else "eager"


COMPILE_SEVERITY = {"eager_fallback": 2, "eager": 1, "compiled": 0}


def engine_workers(info: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The workers of info() that have a process (every worker, not worker 0's top-level copy)."""
    workers = [w for w in info.get("workers") or [] if w.get("pid") is not None]
    return workers or [info]


def worst_compile(info: Mapping[str, Any]) -> tuple[str, str]:
    """(state, error) of the worker in the worst compile state: one fallen back is reported."""
    worst = max(engine_workers(info), key=lambda w: COMPILE_SEVERITY[compile_state(w)])
    return compile_state(worst), str(worst.get("compile_error") or "")


def memory_total(info: Mapping[str, Any], key: str) -> int | None:
    """A memory reading summed over the workers (None when no worker reported it)."""
    values = [w.get(key) for w in engine_workers(info) if isinstance(w.get(key), int)]
    return sum(values) if values else None  # type: ignore[arg-type]


def synthesis_requests(requests: Mapping[str, Any]) -> int:
    """Requests to the synthesis routes (not scrapes, status or voice calls), any status."""
    return sum(sum(by_status.values()) for route, by_status in requests.items() if route in SYNTHESIS_ROUTES)


def count_delta(now: Mapping[str, int], before: Mapping[str, int]) -> dict[str, int]:
    return {key: value - before.get(key, 0) for key, value in now.items() if value - before.get(key, 0)}


def rtf_buckets(metrics: Metrics) -> Buckets:
    return {float(sample.labels["le"]): sample.value for family in metrics.rtf.collect()
            for sample in family.samples if sample.name == "tts_rtf_bucket"}


def worst_utilization(gpus: Sequence[GpuSample]) -> float | None:
    values = [gpu.utilization_percent for gpu in gpus if gpu.utilization_percent is not None]
    return max(values) if values else None


class HealthCheck:
    """The daily report job and the RTF watch job."""

    def __init__(self, ctx: JobContext, clocks: ClockKeeper, sampler: Sampler, leak: LeakWatch,
                 recycler: Recycler) -> None:
        self.ctx, self.clocks, self.sampler, self.leak, self.recycler = ctx, clocks, sampler, leak, recycler
        self._seen_rtf: dict[str, Buckets] = {"daily": {}, "watch": {}}
        self._seen_requests: tuple[int, dict[str, int]] = (0, {})
        self._last_action_s: float | None = None

    def _rtf_since(self, key: str, min_jobs: int) -> tuple[float | None, int]:
        """(p95, jobs) since the previous call for `key`; the window only moves on with >= min_jobs."""
        now = rtf_buckets(self.ctx.metrics)
        delta = bucket_delta(now, self._seen_rtf[key])
        jobs = int(delta[-1][1]) if delta else 0
        if jobs < max(min_jobs, 1):
            return None, jobs
        self._seen_rtf[key] = now
        return histogram_quantile(RTF_QUANTILE, delta), jobs

    def _requests_since(self) -> tuple[int, dict[str, int]]:
        counters = self.ctx.metrics.counters()
        total = synthesis_requests(counters["requests"])
        errors = {str(cause): int(count) for cause, count in counters["errors"].items()}  # type: ignore[call-overload]
        before_total, before_errors = self._seen_requests
        self._seen_requests = (total, errors)
        return total - before_total, count_delta(errors, before_errors)

    async def _inputs(self, rtf_p95: float | None) -> HealthInputs:
        cfg = self.ctx.get_config()
        locked = (await self.clocks.read()).locked if cfg.gpu.lock_clocks else None
        gpus = self.sampler.gpus or (await self.sampler.read_hardware())[0]
        info, (requests, failures) = self.ctx.engine.info(), self._requests_since()
        slope = self.leak.last_decision.slope_bytes_per_hour if self.leak.last_decision else None
        compiled, compile_error = worst_compile(info)
        return HealthInputs(
            rtf_p95=rtf_p95, rtf_target=cfg.jobs.rtf_target, clock_state_locked=locked,
            clock_drift_count=self.clocks.track.drift_count, compile_state=compiled,
            compile_error=compile_error, rss_bytes=memory_total(info, "worker_rss_bytes"),
            gpu_allocated_bytes=memory_total(info, "cuda_allocated_bytes"),
            gpu_reserved_bytes=memory_total(info, "cuda_reserved_bytes"), leak_slope_bytes_per_hour=slope,
            requests_total=requests, failures_by_cause=failures,
            throttle_reasons=sorted({r for gpu in gpus for r in gpu.throttle_reasons}),
            max_temp_c=max_temperature(gpus), utilization_percent=worst_utilization(gpus))

    # --- the daily report ----------------------------------------------------------------------
    async def daily(self) -> JobOutcome:
        rtf_p95, jobs = self._rtf_since("daily", 1)
        if rtf_p95 is None:
            rtf_p95 = self.ctx.traffic.rtf_p95()
        report = daily_report(await self._inputs(rtf_p95))
        report["actions_taken"] = await self._act(report["diagnosis"]["actions"], "daily health")
        report.update(self._stamp(jobs))
        self._publish_rtf(report["rtf"]["breach"], report["diagnosis"]["causes"])
        path = await asyncio.to_thread(self._write, report)
        emit = log.info if report["ok"] else log.warning
        emit("health_report", ok=report["ok"], problems=report["problems"], actions=report["actions_taken"],
             path=str(path))
        summary = "all good" if report["ok"] else "; ".join(report["problems"])
        return JobOutcome("ok" if report["ok"] else "flagged", summary, report)

    def _stamp(self, rtf_jobs: int) -> dict[str, Any]:
        now = dt.datetime.fromtimestamp(self.ctx.clock()).astimezone()
        return {"date": now.date().isoformat(), "generated_at": now.isoformat(timespec="seconds"),
                "rtf_jobs_in_window": rtf_jobs}

    def _write(self, report: dict[str, Any]) -> Path:
        directory = self.ctx.log_dir / HEALTH_DIR
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{report['date']}.json"
        atomic_write_text(path, json.dumps(report, indent=1, default=str) + "\n")
        return path

    # --- the watch -----------------------------------------------------------------------------
    async def watch(self) -> JobOutcome:
        rtf_p95, jobs = self._rtf_since("watch", WATCH_MIN_JOBS)
        if rtf_p95 is None:
            return JobOutcome("skipped", f"{jobs} engine jobs since the last check (< {WATCH_MIN_JOBS})")
        inputs = await self._inputs(rtf_p95)
        diagnosis = diagnose_rtf_breach(rtf_p95, inputs.rtf_target, inputs.clock_state_locked,
                                        inputs.throttle_reasons, inputs.max_temp_c, inputs.compile_state,
                                        inputs.utilization_percent)
        self._publish_rtf(diagnosis.breach, diagnosis.causes)
        if not diagnosis.breach:
            return JobOutcome("ok", f"rtf p95 {rtf_p95:.3f} within {inputs.rtf_target:.3f} ({jobs} jobs)")
        taken = await self._act(list(diagnosis.actions), "rtf watch")
        log.warning("rtf_breach", causes=diagnosis.causes, actions=taken)
        details = {"causes": diagnosis.causes, "actions": taken}
        return JobOutcome("flagged", "; ".join(diagnosis.causes), details)

    def _publish_rtf(self, breach: bool, causes: list[str]) -> None:
        set_degraded(self.ctx.status_sources, DEGRADED_KEY, causes[0] if breach and causes else None)

    # --- acting --------------------------------------------------------------------------------
    async def _act(self, actions: Sequence[str], why: str) -> list[dict[str, str]]:
        if not actions:
            return []
        now = self.ctx.clock()
        if self._last_action_s is not None and now - self._last_action_s < ACT_COOLDOWN_S:
            ago = now - self._last_action_s
            wait = f"not acted: last action {ago:.0f} s ago (cooldown {ACT_COOLDOWN_S:.0f} s)"
            return [{"action": action, "result": wait} for action in actions]
        self._last_action_s = now
        return [{"action": action, "result": await ACTIONS[action](self, why)} for action in actions]

    async def _relock(self, why: str) -> str:
        return await self.clocks.relock()

    async def _recycle(self, why: str) -> str:
        return (await self.recycler.recycle(f"health ({why}: rtf breach)"))[1]

    async def _thermal(self, why: str) -> str:
        return "reported: gpu hot or throttled; check cooling (heatsink, airflow, fan)"

    async def _compile_fallback(self, why: str) -> str:
        return "reported: torch.compile failed, running eager; see compile_error, fix, then restart"


HealthAction = Callable[[HealthCheck, str], Awaitable[str]]
ACTIONS: dict[str, HealthAction] = {
    "relock": HealthCheck._relock, "recycle": HealthCheck._recycle,
    "report_thermal": HealthCheck._thermal, "report_compile_fallback": HealthCheck._compile_fallback,
}
