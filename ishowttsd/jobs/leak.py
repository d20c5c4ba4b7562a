"""Leak detector (R19, R25): the memory history of each current worker → decide.leak → recycle.

Only samples of the worker now serving a slot count (same pid): a fresh worker starts a fresh trend,
whatever recycled or restarted the previous one. With several worker slots (engine.devices) each
has its own trend, and only the leaking one is recycled while the others serve. The recycle's
reason starts with "leak", so the engine counts it as tts_engine_restarts_total{reason="leak"}.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from typing import Any

import structlog

from ishowttsd.config import JobsConfig
from ishowttsd.decide.leak import MIB, MemorySample, RecycleDecision, decide_recycle
from ishowttsd.fsutil import read_jsonl
from ishowttsd.jobs.context import JobContext, JobOutcome, engine_workers
from ishowttsd.jobs.recycle import RECYCLE_STATUS, Recycler
from ishowttsd.jobs.sampler import Sampler

log = structlog.get_logger(__name__)
MAX_MIN_SPAN_S = 600.0
MIN_SAMPLES_FLOOR = 3


def worker_history(records: Iterable[Mapping[str, Any]], pid: object) -> list[MemorySample]:
    """Samples of worker `pid` that carry a memory reading (older workers and gaps left out)."""
    samples = []
    for record in records:
        if record.get("worker_pid") == pid and isinstance(record.get("rss_bytes"), int):
            try:
                samples.append(MemorySample.from_mapping(record))
            except (KeyError, TypeError, ValueError):
                continue
    return samples


def trend_thresholds(jobs: JobsConfig) -> dict[str, float]:
    """How much history a trend needs: half the window, spanning half its time (at most 10 min)."""
    return {"min_samples": max(MIN_SAMPLES_FLOOR, jobs.leak_window // 2),
            "min_span_s": min(MAX_MIN_SPAN_S, jobs.leak_window * jobs.sample_interval_s / 2)}


def decide_for(history: list[MemorySample], jobs: JobsConfig, now_s: float,
               since_s: float | None) -> RecycleDecision:
    needs = trend_thresholds(jobs)
    return decide_recycle(history, window=jobs.leak_window,
                          slope_threshold_bytes_per_hour=jobs.leak_slope_mib_per_hour * MIB,
                          rss_ceiling_bytes=jobs.rss_ceiling_mib * MIB,
                          gpu_ceiling_bytes=jobs.gpu_ceiling_mib * MIB,
                          min_samples=int(needs["min_samples"]), now_s=now_s, since_s=since_s,
                          min_span_s=needs["min_span_s"])


class LeakWatch:
    """The leak job: one trend per worker slot; only a leaking worker is recycled.

    Keeps the last decision (the most urgent of the workers') for the health report.
    """

    def __init__(self, ctx: JobContext, sampler: Sampler, recycler: Recycler) -> None:
        self.ctx, self.sampler, self.recycler = ctx, sampler, recycler
        self.last_decision: RecycleDecision | None = None
        self.last_recycle_s: dict[int, float] = {}  # worker index → wall time of its last leak recycle

    async def run(self) -> JobOutcome:
        info = self.ctx.engine.info()
        if info.get("state") != "ready" or (info.get("pid") is None and "workers" not in info):
            return JobOutcome("skipped", f"engine {info.get('state')}: no trend to judge")
        workers = [w for w in engine_workers(info) if w.get("state", "ready") == "ready" and w.get("pid")]
        records = await asyncio.to_thread(read_jsonl, self.sampler.history_path)
        # logrotate bounds the file itself; each sample wrote one line per worker
        records = records[-self.ctx.get_config().jobs.memory_history_max * max(1, len(engine_workers(info))):]
        now = self.ctx.clock()
        decisions = [(int(w.get("index", 0)), self._decide(records, w, now)) for w in workers]
        if not decisions:
            return JobOutcome("skipped", "no worker ready: no trend to judge")
        return await self._act(decisions, now, multi=len(engine_workers(info)) > 1)

    def _decide(self, records: list[dict[str, Any]], worker: Mapping[str, Any], now: float) -> RecycleDecision:
        since = self.last_recycle_s.get(int(worker.get("index", 0)))
        return decide_for(worker_history(records, worker["pid"]), self.ctx.get_config().jobs, now, since)

    async def _act(self, decisions: list[tuple[int, RecycleDecision]], now: float, multi: bool) -> JobOutcome:
        index, decision = max(decisions, key=lambda pair: pair[1].recycle)  # a leaking worker first
        self.last_decision = decision
        details = {"reason": decision.reason, "metric": decision.metric, "value": decision.value,
                   "slope_mib_per_hour": _mib(decision.slope_bytes_per_hour)}
        if multi:
            details.update(worker=index, workers={str(i): d.reason for i, d in decisions})
        if not decision.recycle:
            return JobOutcome("ok", decision.reason, details)
        return await self._recycle(decision, details, now, index if multi else None)

    async def _recycle(self, decision: RecycleDecision, details: dict[str, Any], now: float,
                       worker: int | None) -> JobOutcome:
        log.warning("leak_detected", reason=decision.reason, metric=decision.metric, value=decision.value,
                    worker=worker)
        ok, what = await self._recycle_worker(f"leak ({decision.reason})", worker)
        if ok:
            self.last_recycle_s[worker or 0] = now
        return JobOutcome(RECYCLE_STATUS[ok], f"leak: {what}", {**details, "recycled": ok})

    async def _recycle_worker(self, reason: str, worker: int | None) -> tuple[bool | None, str]:
        if worker is None:
            return await self.recycler.recycle(reason)
        return await self.recycler.recycle(reason, worker=worker)


def _mib(value: float | None) -> float | None:
    return None if value is None else round(value / MIB, 2)
