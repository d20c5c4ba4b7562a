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

from ishowttsd.engine import protocol as p
from ishowttsd.engine.errors import (
    DeadlineExceeded,
    EngineUnavailable,
    SynthesisFailed,
    SynthesisRejected,
)
from ishowttsd.engine.handle import WorkerHandle
from ishowttsd.engine.lifecycle import WorkerLifecycle
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
Handler = Callable[["EngineClient", WorkerHandle, Any], None]


class EngineClient(WorkerLifecycle):
    def __init__(self, spec: EngineSpec, limits: EngineLimits, events: EngineEvents | None = None) -> None:
        self.spec, self.limits = spec, limits
        self.events = events or EngineEvents()
        self.state, self.detail = "stopped", ""
        self.current: WorkerHandle | None = None
        self.restarts: list[tuple[float, str]] = []
        self.admission = Admission(limits, spec.max_batch)
        self.totals = JobTotals()
        self._ready = asyncio.Event()
        self._pinger: asyncio.Task[None] | None = None
        self._seq = itertools.count(1)
        self._profiles: dict[int, asyncio.Future[p.ProfileDone]] = {}

    # ---- requests -------------------------------------------------------------------------
    def is_ready(self) -> bool:
        return self.state in ("ready", "recycling") and self._serving() is not None

    def _serving(self) -> WorkerHandle | None:
        handle = self.current
        if handle is None or handle.ready is None or handle.exited or handle.retiring:
            return None
        return handle

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
                return await asyncio.wait_for(ticket.events.get(), wait)
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
        self.admission.dispatch(self._serving(), self._fail)

    def _fail(self, ticket: Ticket, reason: str) -> None:
        ticket.done = True
        ticket.events.put_nowait(WorkerLost(reason))

    async def send_fault(self, fault: p.Fault) -> bool:
        return self.spec.fault_injection and self.current is not None and self.current.send(fault)

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
    def _on_message(self, handle: WorkerHandle, message: object) -> None:
        handler = HANDLERS.get(type(message))
        if handler:
            handler(self, handle, message)

    def _on_ready(self, handle: WorkerHandle, ready: p.Ready) -> None:
        handle.ready = ready
        self.events.worker_ready(ready.compiled, ready.compile_error)
        handle.last_pong_at = time.monotonic()  # boot time does not count as silence
        if handle is self.current:
            self._set_state("ready", "")
            self._ready.set()
            self._dispatch()

    def _on_job_event(self, handle: WorkerHandle, event: Any) -> None:
        ticket = self.admission.tickets.get(event.job_id)
        if ticket is not None:
            if isinstance(event, p.Done | p.Error):
                ticket.done = True
            ticket.events.put_nowait(event)
        if isinstance(event, p.Done | p.Error):
            self._dispatch()

    def _on_boot_failed(self, handle: WorkerHandle, failed: p.BootFailed) -> None:
        handle.boot_failure = failed.reason

    def _on_pong(self, handle: WorkerHandle, pong: p.Pong) -> None:
        handle.record_pong(pong)

    def _on_profile_done(self, handle: WorkerHandle, done: p.ProfileDone) -> None:
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
PONG_COUNTERS = ("batches_run", "items_run", "jobs_expired", "compiles_after_ready")


def engine_info(client: EngineClient) -> dict[str, object]:
    """The engine section of /v1/status."""
    handle = client.current
    ready, pong = (handle.ready, handle.last_pong) if handle else (None, None)
    waiting = len(client.admission.waiting)
    return {
        "state": client.state, "detail": client.detail, "pid": handle.pid if handle else None,
        "model": client.spec.model, "random_weights": client.spec.random_weights, "nfe": client.spec.nfe,
        "device": ready.device if ready else None, "dtype": ready.dtype if ready else None,
        "compiled": ready.compiled if ready else None, "compile_error": ready.compile_error if ready else "",
        "boot_s": ready.boot_s if ready else None, "warm_s": ready.warm_s if ready else None,
        "warm_graphs": ready.warm_graphs if ready else None,
        "buckets": list(ready.buckets) if ready else [], "max_batch": client.spec.max_batch,
        "restarts": len(client.restarts), "last_restart": client.restarts[-1][1] if client.restarts else None,
        "queue_depth": waiting, "in_flight": len(client.admission.tickets) - waiting,
        "worker_rss_bytes": pong.rss_bytes if pong else None,
        "cuda_allocated_bytes": pong.cuda_allocated_bytes if pong else None,
        "cuda_reserved_bytes": pong.cuda_reserved_bytes if pong else None,
        **{key: getattr(pong, key) if pong else None for key in PONG_COUNTERS},
        "worker_jobs_cancelled": pong.jobs_cancelled if pong else None,
        **client.totals.as_dict(),
    }
