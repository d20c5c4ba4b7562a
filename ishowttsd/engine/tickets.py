"""The engine client's requests, tickets and admission queue (no torch, no worker process here).

Admission is the daemon's: at most `max_queue` requests wait here (more get 429 + Retry-After);
`inflight_limit` jobs per worker are handed over, enough for the worker to batch them.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field

from ishowttsd.decide.dispatch import BatchKey, WorkerLoad, batch_key
from ishowttsd.engine import protocol as p
from ishowttsd.engine.errors import EngineUnavailable, QueueFull
from ishowttsd.engine.handle import WorkerHandle

MIN_INFLIGHT = 2  # one running, one queued in the worker so it never idles between jobs


def inflight_limit(max_batch: int) -> int:
    """Jobs handed to one worker at a time: two full batches (one running, one filling)."""
    return max(MIN_INFLIGHT, 2 * max_batch)


@dataclass(frozen=True)
class SynthesisRequest:
    text: str
    voice: p.VoiceRef
    nfe: int
    speed: float
    seed: int
    stream: bool = False
    deadline_s: float = 60.0
    # The API's "has the client gone?" check, polled while waiting (a buffered answer sees no error).
    disconnected: Callable[[], bool] | None = None
    # Pin to one worker slot (the canary checks each); None = whichever worker dispatch picks.
    worker: int | None = None


@dataclass(frozen=True)
class EngineLimits:
    max_queue: int = 64
    retry_after_s: float = 2.0
    boot_timeout_s: float = 900.0
    ping_interval_s: float = 2.0
    heartbeat_timeout_s: float = 15.0
    max_restarts: int = 5
    restart_window_s: float = 300.0
    standby: bool = False  # keep a warm standby worker per slot (engine/standby.py)
    boot_yield_max_pause_s: float = 5.0  # a boot beside a serving worker pauses at most this long (0 = never)


@dataclass
class Ticket:
    job: p.Job
    events: asyncio.Queue[object] = field(default_factory=asyncio.Queue)
    enqueued_at: float = field(default_factory=time.monotonic)
    worker: WorkerHandle | None = None
    dispatched_at: float = 0.0
    done: bool = False
    key: BatchKey = (0, 0)  # batching key (nfe, length class): same-key jobs go to the same worker
    pinned: int | None = None  # the worker slot this ticket must run on (None = any)
    started: bool = False  # its first chunk arrived: no longer waiting to be batched


class WorkerLost:
    """Event put on a ticket whose worker died with it."""

    def __init__(self, reason: str) -> None:
        self.reason = reason


@dataclass
class EngineEvents:
    """Hooks the daemon wires to metrics and logs (all optional)."""

    job_finished: Callable[[float, float, float, float], None] = lambda audio_s, synth_s, ttfa_s, wait_s: None
    job_failed: Callable[[str], None] = lambda cause: None
    restarted: Callable[[str], None] = lambda reason: None
    state_changed: Callable[[str, str], None] = lambda state, detail: None
    batch_size: Callable[[int], None] = lambda size: None  # per finished job: the largest batch it ran in
    worker_ready: Callable[[bool, str], None] = lambda compiled, compile_error: None  # per worker Ready
    worker_restarted: Callable[[int, str, str], None] = lambda index, device, reason: None
    standby_state: Callable[[int, str, str], None] = lambda index, device, state: None
    worker_state: Callable[[int, str, str], None] = lambda index, device, state: None


@dataclass
class JobTotals:
    """What finished jobs reported (for /v1/status and the benchmark's vocoder share)."""

    jobs: int = 0
    synth_s: float = 0.0
    vocoder_s: float = 0.0
    cancelled: int = 0
    batch_sizes: Counter[int] = field(default_factory=Counter)

    def record(self, done: p.Done) -> None:
        self.jobs += 1
        self.synth_s += done.synth_s
        self.vocoder_s += done.vocoder_s
        self.batch_sizes[done.batch_size] += 1

    def as_dict(self) -> dict[str, object]:
        return {"jobs_finished": self.jobs, "synth_s_total": round(self.synth_s, 6),
                "vocoder_s_total": round(self.vocoder_s, 6), "jobs_cancelled": self.cancelled,
                "batch_sizes": {str(k): v for k, v in sorted(self.batch_sizes.items())}}


class Admission:
    """Tickets waiting for a worker and tickets a worker holds."""

    def __init__(self, limits: EngineLimits, max_batch: int, max_chunk_bytes: int = 135) -> None:
        self.limits, self.inflight_limit = limits, inflight_limit(max_batch)
        self.max_batch, self.max_chunk_bytes = max_batch, max_chunk_bytes
        self.waiting: deque[Ticket] = deque()
        self.tickets: dict[int, Ticket] = {}
        self._ids = itertools.count(1)

    def admit(self, req: SynthesisRequest, now_s: float) -> Ticket:
        """A new ticket at the back of the queue; QueueFull when max_queue are already waiting."""
        if len(self.waiting) >= self.limits.max_queue:
            raise QueueFull(len(self.waiting), self.limits.retry_after_s)
        deadline = now_s + req.deadline_s if math.isfinite(req.deadline_s) else math.inf
        job = p.Job(next(self._ids), req.text, req.voice, req.nfe, req.speed, req.seed, req.stream, deadline)
        ticket = Ticket(job, key=batch_key(req.nfe, req.text, self.max_chunk_bytes), pinned=req.worker)
        self.tickets[job.job_id] = ticket
        self.waiting.append(ticket)
        return ticket

    def forget(self, ticket: Ticket) -> None:
        self.tickets.pop(ticket.job.job_id, None)
        if ticket in self.waiting:
            self.waiting.remove(ticket)

    def inflight(self, handle: WorkerHandle) -> int:
        return sum(1 for t in self.tickets.values() if t.worker is handle and not t.done)

    def dispatch(self, handle: WorkerHandle | None, fail: Callable[[Ticket, str], None]) -> None:
        """Hand waiting tickets to `handle` while it has room (one worker)."""
        while handle and self.waiting and self.inflight(handle) < self.inflight_limit:
            self.hand_over(self.waiting[0], handle, fail)

    def hand_over(self, ticket: Ticket, handle: WorkerHandle, fail: Callable[[Ticket, str], None]) -> None:
        self.waiting.remove(ticket)
        ticket.worker, ticket.dispatched_at = handle, time.monotonic()
        if not handle.send(ticket.job):
            fail(ticket, "engine worker lost")

    def load(self, handle: WorkerHandle | None) -> WorkerLoad:
        """What dispatch needs to know of one worker (None: a slot with no serving worker)."""
        if handle is None:
            return WorkerLoad(False, 0, self.inflight_limit)
        held = self.held_by(handle)
        return WorkerLoad(True, len(held), self.inflight_limit, tuple(t.key for t in held if not t.started),
                          self.max_batch)

    def held_by(self, handle: WorkerHandle) -> list[Ticket]:
        return [t for t in self.tickets.values() if t.worker is handle and not t.done]

    def unavailable(self, state: str, detail: str) -> EngineUnavailable:
        return EngineUnavailable(f"engine {state}: {detail}".rstrip(": "), self.limits.retry_after_s)
