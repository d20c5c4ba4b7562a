"""The daemon's side of the engine: admission, dispatch, restarts and recycles of the worker.

The listening socket, the queue and the metrics live in the daemon; the worker can die, hang or be
recycled without the API noticing more than a 503 for the jobs it had in hand. A request that ends
before its audio is done (deadline, client gone, generator closed) sends the worker a Cancel, so
its batch slot is freed; a request whose deadline passes unstarted is dropped by the worker (504).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from ishowttsd.decide.dispatch import WorkerLoad, pick_worker
from ishowttsd.engine import protocol as p
from ishowttsd.engine.errors import (
    DeadlineExceeded,
    EngineUnavailable,
    SynthesisFailed,
    SynthesisRejected,
)
from ishowttsd.engine.handle import WorkerHandle
from ishowttsd.engine.info import engine_info
from ishowttsd.engine.lifecycle import WorkerLifecycle
from ishowttsd.engine.slot import WorkerSlot
from ishowttsd.engine.spec import EngineSpec
from ishowttsd.engine.tickets import (
    Admission,
    EngineEvents,
    EngineLimits,
    JobTotals,
    SynthesisRequest,
    Ticket,
    WorkerLost,
)

__all__ = ["EngineClient", "EngineEvents", "EngineLimits", "SynthesisRequest"]
DISCONNECT_POLL_S = 0.25
Handler = Callable[["EngineClient", WorkerSlot, WorkerHandle, Any], None]


class EngineClient(WorkerLifecycle):
    """One admission queue in front of one worker slot per device (`devices`; () = one on spec.device)."""

    def __init__(self, spec: EngineSpec, limits: EngineLimits, events: EngineEvents | None = None,
                 devices: tuple[str, ...] = ()) -> None:
        self.spec, self.limits = spec, limits
        self.events = events or EngineEvents()
        self.state, self.detail = "stopped", ""
        self.slots = [WorkerSlot(self, index, device) for index, device in enumerate(devices or (None,))]
        self.admission = Admission(limits, spec.max_batch, spec.max_chunk_bytes)
        self.totals = JobTotals()
        self._ready = asyncio.Event()
        self._pinger: asyncio.Task[None] | None = None
        self._seq = itertools.count(1)
        self._profiles: dict[int, asyncio.Future[p.ProfileDone]] = {}

    # ---- requests -------------------------------------------------------------------------
    def is_ready(self) -> bool:
        return self.state in ("ready", "recycling") and self._serving() is not None

    def _serving(self) -> WorkerHandle | None:
        """The first slot's serving worker, else any serving worker."""
        return next(filter(None, (slot.serving() for slot in self.slots)), None)

    async def synthesize(self, req: SynthesisRequest) -> AsyncIterator[bytes]:
        if self.state in ("failed", "stopped", "stopping"):
            raise self.admission.unavailable(self.state, self.detail)
        ticket = self.admission.admit(req, time.monotonic())
        self._dispatch()
        first_audio = 0.0
        try:
            while True:
                event = await self._next_event(ticket, req)
                if isinstance(event, p.Chunk):
                    first_audio = first_audio or time.monotonic()
                    yield event.pcm
                elif isinstance(event, p.Done):
                    self._finished(ticket, event, first_audio)
                    return
                else:
                    raise self._error_for(event)
        finally:
            self._forget(ticket)

    async def _next_event(self, ticket: Ticket, req: SynthesisRequest) -> object:
        while True:
            left = ticket.job.deadline_s - time.monotonic()
            if left <= 0:
                self.events.job_failed("deadline")
                raise DeadlineExceeded(f"not done within the request deadline ({ticket.job.job_id})")
            wait = min(left, DISCONNECT_POLL_S) if req.disconnected else left
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):  # not wait_for: no Task per event
                    return await ticket.events.get()
            if req.disconnected and req.disconnected():
                raise ConnectionResetError("the client disconnected")

    def _error_for(self, event: object) -> Exception:
        if isinstance(event, p.Error):
            self.events.job_failed(event.code if event.code in ("bad_input", "deadline") else "engine")
            errors = {"bad_input": SynthesisRejected, "deadline": DeadlineExceeded}
            if event.code in errors:
                return errors[event.code](event.message)
            return SynthesisFailed(event.message, self.limits.retry_after_s)
        self.events.job_failed("worker_lost")
        return EngineUnavailable(getattr(event, "reason", "engine worker lost"), self.limits.retry_after_s)

    def _finished(self, ticket: Ticket, done: p.Done, first_audio: float) -> None:
        ticket.done = True
        self.totals.record(done)
        self.events.batch_size(done.batch_size)
        now = time.monotonic()
        ttfa = (first_audio or now) - ticket.enqueued_at
        wait = (ticket.dispatched_at or now) - ticket.enqueued_at
        self.events.job_finished(done.samples / p.SAMPLE_RATE, done.synth_s, ttfa, wait)

    def _forget(self, ticket: Ticket) -> None:
        """The request is over: a job the worker still holds is cancelled there, freeing its slot."""
        if not ticket.done and ticket.worker is not None:
            ticket.worker.send(p.Cancel(ticket.job.job_id))
            self.totals.cancelled += 1
        ticket.done = True
        self.admission.forget(ticket)
        self._dispatch()

    def _dispatch(self) -> None:
        """Hand waiting tickets over; then boots beside a serving worker pause or go on (its load changed)."""
        self._hand_over_waiting()
        for slot in self.slots:
            slot.yielding.check()

    def _hand_over_waiting(self) -> None:
        """Hand waiting tickets over, oldest first, each to the worker pick_worker chooses."""
        for ticket in list(self.admission.waiting):
            if ticket.done:
                continue
            handles = [slot.serving() for slot in self.slots]
            target = self._target(ticket, [self.admission.load(handle) for handle in handles])
            handle = None if target is None else handles[target]
            if handle is not None:
                self.admission.hand_over(ticket, handle, self._fail)
            elif ticket.pinned is None:
                return  # no worker has room: the tickets behind wait too

    def _target(self, ticket: Ticket, loads: list[WorkerLoad]) -> int | None:
        if ticket.pinned is None:
            return pick_worker(loads, ticket.key)
        if not 0 <= ticket.pinned < len(self.slots) or self.slots[ticket.pinned].state == "failed":
            self._fail(ticket, f"no such worker in rotation: {ticket.pinned}")
            return None
        return ticket.pinned if loads[ticket.pinned].has_room else None

    def _fail(self, ticket: Ticket, reason: str) -> None:
        ticket.done = True
        ticket.events.put_nowait(WorkerLost(reason))

    async def send_fault(self, fault: p.Fault, worker: int = 0) -> bool:
        """Test-only: hand `fault` to worker slot `worker` (fault_injection must be on)."""
        if not self.spec.fault_injection or not 0 <= worker < len(self.slots):
            return False
        handle = self.slots[worker].current
        return handle is not None and handle.send(fault)

    async def profile(self, path: str, batches: int = 5, timeout_s: float = 300.0) -> p.ProfileDone:
        """Ask the worker for a torch profiler trace of its next `batches` batches (R18)."""
        handle = self._serving()
        if handle is None:
            raise self.admission.unavailable(self.state, self.detail)
        request_id = next(self._seq)
        future = self._profiles[request_id] = asyncio.get_running_loop().create_future()
        handle.send(p.Profile(request_id, path, batches))
        try:
            return await asyncio.wait_for(future, timeout_s)
        finally:
            self._profiles.pop(request_id, None)

    # ---- messages from workers -------------------------------------------------------------
    def _on_slot_message(self, slot: WorkerSlot, handle: WorkerHandle, message: object) -> None:
        handler = HANDLERS.get(type(message))
        if handler:
            handler(self, slot, handle, message)

    def _on_ready(self, slot: WorkerSlot, handle: WorkerHandle, ready: p.Ready) -> None:
        handle.ready = ready
        self.events.worker_ready(ready.compiled, ready.compile_error)
        handle.last_pong_at = time.monotonic()  # boot time does not count as silence
        slot.on_ready(handle)

    def _on_job_event(self, slot: WorkerSlot, handle: WorkerHandle, event: Any) -> None:
        ticket = self.admission.tickets.get(event.job_id)
        slot.jobs_finished += isinstance(event, p.Done)
        if ticket is not None:
            ticket.started = True
            if isinstance(event, p.Done | p.Error):
                ticket.done = True
            ticket.events.put_nowait(event)
        if isinstance(event, p.Done | p.Error):
            self._dispatch()

    def _on_boot_failed(self, slot: WorkerSlot, handle: WorkerHandle, failed: p.BootFailed) -> None:
        handle.boot_failure = failed.reason

    def _on_pong(self, slot: WorkerSlot, handle: WorkerHandle, pong: p.Pong) -> None:
        handle.record_pong(pong)

    def _on_profile_done(self, slot: WorkerSlot, handle: WorkerHandle, done: p.ProfileDone) -> None:
        future = self._profiles.get(done.request_id)
        if future is not None and not future.done():
            future.set_result(done)

    def info(self) -> dict[str, object]:
        return engine_info(self)


HANDLERS: dict[type, Handler] = {
    p.Ready: EngineClient._on_ready, p.Chunk: EngineClient._on_job_event, p.Done: EngineClient._on_job_event,
    p.Error: EngineClient._on_job_event, p.BootFailed: EngineClient._on_boot_failed, p.Pong: EngineClient._on_pong,
    p.ProfileDone: EngineClient._on_profile_done,
}
