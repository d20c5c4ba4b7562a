"""The worker's dynamic batching: jobs in hand, chunk by chunk, grouped by plan_batches.

Every job in hand offers its next text chunk as one PendingItem, needed (batcher.needed_at) at the
job's arrival, or for a stream that has started, when its listener is about to run out of audio;
plan_batches groups them by (width bucket, NFE), says which groups are due (full, waited
batch_window, or near a deadline) and orders them most needed first. run_due runs one due batch
and returns, so jobs that arrived meanwhile are planned with the rest before the next: a new
stream's first chunk waits for the batch on the device, not behind other streams' later chunks.
Each item's audio goes out at once as that job's next Chunk; a job whose last chunk is done gets
its Done. Batching whole jobs chunk by chunk keeps every job's noise stream and cross-fades
identical to running it alone.

No torch here: the engine is passed in (F5Engine or a fake with prepare/run_batch/recover).
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ishowttsd.engine import protocol as p
from ishowttsd.engine.batcher import BatchPlan, PendingItem, needed_at, plan_batches
from ishowttsd.engine.joiner import CrossfadeJoiner, to_pcm16
from ishowttsd.engine.spec import EngineSpec, shape_buckets

BAD_INPUT = (ValueError, OSError, LookupError)


@dataclass
class ActiveJob:
    job: p.Job
    prepared: Any
    joiner: CrossfadeJoiner
    arrived_s: float
    next_chunk: int = 0
    sent: int = 0  # Chunk messages sent
    samples: int = 0  # audio samples sent
    first_audio_s: float | None = None  # when the first Chunk was sent (monotonic)
    synth_s: float = 0.0
    vocoder_s: float = 0.0
    batch_size: int = 1

    @property
    def frames(self) -> int:
        return int(self.prepared.frames[self.next_chunk])

    @property
    def finished(self) -> bool:
        return self.next_chunk >= len(self.prepared.frames)

    def needed_s(self, margin_s: float) -> float:
        """When this job's next chunk is needed (see batcher.needed_at)."""
        return needed_at(self.arrived_s, self.first_audio_s, self.samples / p.SAMPLE_RATE,
                         stream=self.job.stream, margin_s=margin_s)


@dataclass
class BatchCounters:
    batches_run: int = 0
    items_run: int = 0
    jobs_cancelled: int = 0
    jobs_expired: int = 0
    sizes: Counter[int] = field(default_factory=Counter)


class BatchScheduler:
    def __init__(self, engine: Any, spec: EngineSpec, send: Callable[[object], None],
                 progress: Callable[[], None] = lambda: None, clock: Callable[[], float] = time.monotonic) -> None:
        self.engine, self.spec, self.send, self.progress, self.clock = engine, spec, send, progress, clock
        self.stream_margin_s = spec.stream_margin_ms / 1000
        shapes = getattr(engine, "shapes", None)
        self.buckets = shapes.widths if shapes is not None else shape_buckets(spec)
        self.active: dict[int, ActiveJob] = {}
        self.counters = BatchCounters()
        self.running: tuple[int, ...] = ()  # job ids of the batch on the device now
        self.after_batch: Callable[[], None] = lambda: None  # profiler hook
        self.hold_until_s = -math.inf  # after a batch of 2+ items: wait until then for a fuller one
        self._crossfade = int(spec.crossfade_ms * p.SAMPLE_RATE / 1000)

    # ---- arrivals and departures -------------------------------------------------------------
    def add(self, job: p.Job) -> None:
        try:
            prepared = self.engine.prepare(job)
        except Exception as exc:
            code = "bad_input" if _is_bad_input(exc) else "engine"
            self.send(p.Error(job.job_id, code, str(exc) or type(exc).__name__))
            return
        self.active[job.job_id] = ActiveJob(job, prepared, CrossfadeJoiner(self._crossfade), self.clock())

    def cancel(self, job_ids: set[int]) -> None:
        for job_id in job_ids & self.active.keys():
            del self.active[job_id]
            self.counters.jobs_cancelled += 1

    # ---- planning ------------------------------------------------------------------------------
    def _pending(self) -> list[PendingItem]:
        margin_s = self.stream_margin_s
        return [PendingItem(job_id, a.job.nfe, a.frames, a.arrived_s, a.job.deadline_s, a.needed_s(margin_s))
                for job_id, a in self.active.items()]

    def _plan(self, pending: list[PendingItem], now_s: float) -> BatchPlan:
        return plan_batches(pending, now_s, max_batch=self.spec.max_batch, window_s=self.spec.batch_window_ms / 1000,
                            buckets=self.buckets, deadline_margin_s=0.0, hold_until_s=self.hold_until_s)

    def wait_s(self) -> float | None:
        """How long the worker may block for messages: None = idle, 0 = work is due now."""
        if not self.active:
            return None
        plan = self._plan(self._pending(), self.clock())
        return 0.0 if plan.batches or plan.expired or plan.oversized else plan.wait_s

    def run_due(self) -> int:
        """Expire, then run the most needed due batch; returns how many batches ran (0 or 1).

        One batch a call: the caller takes in new messages (jobs, cancels) and calls again while
        wait_s() is 0, so every batch is chosen among everything in hand at the time.
        """
        pending = self._pending()
        plan = self._plan(pending, self.clock())
        for job_id in plan.expired:
            self._expire(job_id)
        runs = _runs_by_need(plan, {i.job_id: i.needed_s for i in pending}, self.active)
        if not runs:
            return 0
        job_ids, nfe = runs[0]
        self._run(list(job_ids), nfe)
        return 1

    def _expire(self, job_id: int) -> None:
        del self.active[job_id]
        self.counters.jobs_expired += 1
        self.send(p.Error(job_id, "deadline", "dropped unstarted: the request's deadline passed"))

    # ---- running -------------------------------------------------------------------------------
    def _run(self, job_ids: list[int], nfe: int) -> None:
        if not job_ids:
            return
        jobs = [self.active[j] for j in job_ids]
        self.running = tuple(job_ids)
        try:
            out = self.engine.run_batch([(a.prepared, a.next_chunk) for a in jobs], nfe, self.progress)
        except Exception as exc:
            self.engine.recover()
            self._fail_batch(job_ids, exc)
            return
        finally:
            self.running = ()
            self.progress()
        self._count(len(jobs))
        self.hold_until_s = self.clock() + self.spec.busy_fill_ms / 1000 if len(jobs) > 1 else -math.inf
        for active, wave in zip(jobs, out.waves, strict=True):
            if active.job.job_id in self.active:  # cancelled meanwhile: output discarded
                self._deliver(active, wave, out.synth_s, out.vocoder_s / len(jobs), len(jobs))
        self.after_batch()

    def _count(self, size: int) -> None:
        self.counters.batches_run += 1
        self.counters.items_run += size
        self.counters.sizes[size] += 1

    def _fail_batch(self, job_ids: list[int], exc: Exception) -> None:
        code = "bad_input" if _is_bad_input(exc) and len(job_ids) == 1 else "engine"
        for job_id in job_ids:
            if self.active.pop(job_id, None) is not None:
                self.send(p.Error(job_id, code, f"{type(exc).__name__}: {exc}"))

    def _deliver(self, active: ActiveJob, wave: Any, synth_s: float, vocoder_s: float, size: int) -> None:
        active.synth_s += synth_s
        active.vocoder_s += vocoder_s
        active.batch_size = max(active.batch_size, size)
        active.next_chunk += 1
        if not active.finished:
            self._emit(active, active.joiner.push(wave))
            return
        self._emit(active, active.joiner.push_last(wave))  # the tail too: one message, not two
        del self.active[active.job.job_id]
        self.send(p.Done(active.job.job_id, active.samples, active.synth_s, active.vocoder_s, active.batch_size))

    def _emit(self, active: ActiveJob, audio: Any) -> None:
        if len(audio):
            self.send(p.Chunk(active.job.job_id, active.sent, to_pcm16(audio)))
            if active.first_audio_s is None:
                active.first_audio_s = self.clock()
            active.sent += 1
            active.samples += len(audio)


def _runs_by_need(plan: BatchPlan, needed: dict[int, float],
                  active: dict[int, ActiveJob]) -> list[tuple[tuple[int, ...], int]]:
    """Due batches and oversized items (each run alone) as (job ids, nfe), most needed first."""
    runs = [((job_id,), active[job_id].job.nfe) for job_id in plan.oversized]
    runs += [(batch.job_ids, batch.nfe) for batch in plan.batches]
    return sorted(runs, key=lambda run: min(needed[j] for j in run[0]))  # stable: keeps the plan's ties


def _is_bad_input(exc: Exception) -> bool:
    return isinstance(exc, BAD_INPUT) or type(exc).__name__ == "BadInput"
