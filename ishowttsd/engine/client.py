"""The daemon's side of the engine: admission, dispatch, restarts and recycles of the worker.

The listening socket, the queue and the metrics live in the daemon; the worker can die, hang or be
recycled without the API noticing more than a 503 for the jobs it had in hand.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from ishowttsd.engine import protocol as p
from ishowttsd.engine.errors import DeadlineExceeded, EngineUnavailable, QueueFull, SynthesisFailed, SynthesisRejected
from ishowttsd.engine.handle import WorkerHandle
from ishowttsd.engine.spec import EngineSpec

INFLIGHT_PER_WORKER = 2  # one running, one queued in the worker so it never idles between jobs


@dataclass(frozen=True)
class SynthesisRequest:
    text: str
    voice: p.VoiceRef
    nfe: int
    speed: float
    seed: int
    stream: bool = False
    deadline_s: float = 60.0


@dataclass(frozen=True)
class EngineLimits:
    max_queue: int = 64
    retry_after_s: float = 2.0
    boot_timeout_s: float = 900.0
    ping_interval_s: float = 2.0
    heartbeat_timeout_s: float = 15.0
    max_restarts: int = 5
    restart_window_s: float = 300.0


@dataclass
class Ticket:
    job: p.Job
    events: asyncio.Queue[object] = field(default_factory=asyncio.Queue)
    enqueued_at: float = field(default_factory=time.monotonic)
    worker: WorkerHandle | None = None
    dispatched_at: float = 0.0
    done: bool = False


class WorkerLost:
    """Event put on a ticket whose worker died with it."""


@dataclass
class EngineEvents:
    """Hooks the daemon wires to metrics and logs (all optional)."""

    job_finished: Callable[[float, float, float, float], None] = lambda audio_s, synth_s, ttfa_s, wait_s: None
    job_failed: Callable[[str], None] = lambda cause: None
    restarted: Callable[[str], None] = lambda reason: None
    state_changed: Callable[[str, str], None] = lambda state, detail: None


class EngineClient:
    def __init__(self, spec: EngineSpec, limits: EngineLimits, events: EngineEvents | None = None) -> None:
        self.spec, self.limits = spec, limits
        self.events = events or EngineEvents()
        self.state, self.detail = "stopped", ""
        self.current: WorkerHandle | None = None
        self.restarts: list[tuple[float, str]] = []
        self._waiting: deque[Ticket] = deque()
        self._tickets: dict[int, Ticket] = {}
        self._ids = itertools.count(1)
        self._ready = asyncio.Event()
        self._pinger: asyncio.Task[None] | None = None
        self._seq = itertools.count(1)

    # ---- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        """Spawn the first worker and wait until it is warm (or failed)."""
        self._set_state("starting", "loading model")
        self._spawn()
        self._pinger = asyncio.create_task(self._ping_loop(), name="engine-ping")
        await self.wait_ready(self.limits.boot_timeout_s)

    async def wait_ready(self, timeout_s: float) -> bool:
        try:
            await asyncio.wait_for(self._ready.wait(), timeout_s)
        except TimeoutError:
            return False
        return self.is_ready()

    def _spawn(self) -> WorkerHandle:
        handle = WorkerHandle(self.spec, asyncio.get_running_loop(), self._on_message, self._on_exit)
        handle.start()
        if self.current is None or self.current.exited:
            self.current = handle
        return handle

    async def stop(self, drain_timeout_s: float) -> None:
        self._set_state("stopping", "draining")
        deadline = time.monotonic() + drain_timeout_s
        while self._tickets and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if self._pinger:
            self._pinger.cancel()
        for ticket in list(self._tickets.values()):
            self._fail(ticket, "daemon stopping")
        if self.current:
            await self._retire(self.current)
        self._set_state("stopped", "")

    async def _retire(self, handle: WorkerHandle, timeout_s: float = 10.0) -> None:
        handle.retiring = True
        handle.send(p.Retire())
        if not await handle.wait_exit(timeout_s):
            handle.kill()
            await handle.wait_exit(5.0)

    async def recycle(self, reason: str, overlap: bool = True) -> bool:
        """Start a fresh worker, switch to it when warm, let the old one finish its jobs and exit."""
        old = self.current
        self._set_state("recycling", reason)
        if old and not overlap:
            await self._drain_worker(old)
        new = WorkerHandle(self.spec, asyncio.get_running_loop(), self._on_message, self._on_exit)
        new.start()
        if not await self._wait_worker_ready(new):
            new.kill()
            self._set_state("ready" if old and old.ready and not old.exited else "failed", f"recycle failed: {reason}")
            return False
        self.current = new
        self._note_restart(reason)
        self._set_state("ready", "")
        self._dispatch()
        if old and not old.exited:
            await self._retire(old, timeout_s=max(30.0, self.limits.heartbeat_timeout_s))
        return True

    async def _drain_worker(self, handle: WorkerHandle) -> None:
        handle.retiring = True
        while any(t.worker is handle for t in self._tickets.values()) and not handle.exited:
            await asyncio.sleep(0.05)
        await self._retire(handle)

    async def _wait_worker_ready(self, handle: WorkerHandle) -> bool:
        deadline = time.monotonic() + self.limits.boot_timeout_s
        while handle.ready is None and not handle.exited and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        return handle.ready is not None and not handle.exited

    # ---- requests -------------------------------------------------------------------------
    def is_ready(self) -> bool:
        return self.state in ("ready", "recycling") and self._serving() is not None

    def _serving(self) -> WorkerHandle | None:
        handle = self.current
        if handle is None or handle.ready is None or handle.exited or handle.retiring:
            return None
        return handle

    async def synthesize(self, req: SynthesisRequest) -> AsyncIterator[bytes]:
        ticket = self._admit(req)
        deadline = time.monotonic() + req.deadline_s
        first_audio = 0.0
        try:
            while True:
                event = await self._next_event(ticket, deadline)
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

    def _admit(self, req: SynthesisRequest) -> Ticket:
        if self.state in ("failed", "stopped", "stopping"):
            raise EngineUnavailable(f"engine {self.state}: {self.detail}".rstrip(": "), self.limits.retry_after_s)
        if len(self._waiting) >= self.limits.max_queue:
            raise QueueFull(len(self._waiting), self.limits.retry_after_s)
        job = p.Job(next(self._ids), req.text, req.voice, req.nfe, req.speed, req.seed, req.stream)
        ticket = Ticket(job)
        self._tickets[job.job_id] = ticket
        self._waiting.append(ticket)
        self._dispatch()
        return ticket

    async def _next_event(self, ticket: Ticket, deadline: float) -> object:
        try:
            return await asyncio.wait_for(ticket.events.get(), max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            self.events.job_failed("deadline")
            raise DeadlineExceeded(f"not done within the request deadline ({ticket.job.job_id})") from None

    def _error_for(self, event: object) -> Exception:
        if isinstance(event, p.Error) and event.code == "bad_input":
            self.events.job_failed("bad_input")
            return SynthesisRejected(event.message)
        if isinstance(event, p.Error):
            self.events.job_failed("engine")
            return SynthesisFailed(event.message, self.limits.retry_after_s)
        self.events.job_failed("worker_lost")
        return EngineUnavailable(str(getattr(event, "reason", "engine worker lost")), self.limits.retry_after_s)

    def _finished(self, ticket: Ticket, done: p.Done, first_audio: float) -> None:
        ticket.done = True
        now = time.monotonic()
        ttfa = (first_audio or now) - ticket.enqueued_at
        wait = (ticket.dispatched_at or now) - ticket.enqueued_at
        self.events.job_finished(done.samples / p.SAMPLE_RATE, done.synth_s, ttfa, wait)

    def _forget(self, ticket: Ticket) -> None:
        self._tickets.pop(ticket.job.job_id, None)
        if ticket in self._waiting:
            self._waiting.remove(ticket)

    def _dispatch(self) -> None:
        handle = self._serving()
        while handle and self._waiting and self._inflight(handle) < INFLIGHT_PER_WORKER:
            ticket = self._waiting.popleft()
            ticket.worker, ticket.dispatched_at = handle, time.monotonic()
            if not handle.send(ticket.job):
                self._fail(ticket, "engine worker lost")

    def _inflight(self, handle: WorkerHandle) -> int:
        return sum(1 for t in self._tickets.values() if t.worker is handle and not t.done)

    def _fail(self, ticket: Ticket, reason: str) -> None:
        lost = WorkerLost()
        lost.reason = reason  # type: ignore[attr-defined]
        ticket.done = True
        ticket.events.put_nowait(lost)

    async def send_fault(self, fault: p.Fault) -> bool:
        return self.spec.fault_injection and self.current is not None and self.current.send(fault)

    # ---- messages from workers -------------------------------------------------------------
    def _on_message(self, handle: WorkerHandle, message: object) -> None:
        handler = self._handlers.get(type(message))
        if handler:
            handler(self, handle, message)

    def _on_ready(self, handle: WorkerHandle, ready: p.Ready) -> None:
        handle.ready = ready
        handle.last_pong_at = time.monotonic()  # boot time does not count as silence
        if handle is self.current:
            self._set_state("ready", "")
            self._ready.set()
            self._dispatch()

    def _on_job_event(self, handle: WorkerHandle, event: Any) -> None:
        ticket = self._tickets.get(event.job_id)
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

    _handlers: dict[type, Callable[[EngineClient, WorkerHandle, Any], None]] = {
        p.Ready: _on_ready, p.Chunk: _on_job_event, p.Done: _on_job_event, p.Error: _on_job_event,
        p.BootFailed: _on_boot_failed, p.Pong: _on_pong,
    }

    def _on_exit(self, handle: WorkerHandle, code: int | None) -> None:
        for ticket in [t for t in self._tickets.values() if t.worker is handle and not t.done]:
            self._fail(ticket, f"engine worker exited (code {code})")
        if handle is not self.current or self.state in ("stopping", "stopped"):
            return
        if code == p.EXIT_BOOT_FAILURE or (handle.ready is None and handle.boot_failure):
            self._halt(handle.boot_failure or f"worker could not boot (exit {code})")
        else:
            asyncio.get_running_loop().create_task(self._restart(f"worker exited (code {code})"))

    def _halt(self, reason: str) -> None:
        self._set_state("failed", reason)
        self._ready.set()
        for ticket in list(self._waiting):
            self._fail(ticket, reason)

    async def _restart(self, reason: str) -> None:
        now = time.monotonic()
        recent = [t for t, _ in self.restarts if now - t < self.limits.restart_window_s]
        if len(recent) >= self.limits.max_restarts:
            self._halt(f"{len(recent)} restarts within {self.limits.restart_window_s:.0f}s; last: {reason}")
            return
        self._note_restart(reason)
        self._set_state("restarting", reason)
        self.current = None
        self._spawn()

    def _note_restart(self, reason: str) -> None:
        self.restarts.append((time.monotonic(), reason))
        self.events.restarted(reason.split(" (")[0])

    # ---- liveness ----------------------------------------------------------------------------
    async def _ping_loop(self) -> None:
        while True:
            await asyncio.sleep(self.limits.ping_interval_s)
            handle = self.current
            if handle is None or handle.exited or handle.ready is None:
                continue
            handle.send(p.Ping(next(self._seq)))
            if self.hung_reason(handle):
                reason = self.hung_reason(handle)
                handle.kill()  # its exit restarts it through the normal path
                self._set_state("restarting", reason)

    def hung_reason(self, handle: WorkerHandle) -> str:
        now, limit = time.monotonic(), self.limits.heartbeat_timeout_s
        if now - handle.last_pong_at > limit and now - handle.started_at > limit:
            return f"worker hung: no pong for {now - handle.last_pong_at:.0f}s"
        pong = handle.last_pong
        if pong and pong.busy_job and pong.progress_age_s > limit:
            return f"worker hung: no progress on job {pong.busy_job} for {pong.progress_age_s:.0f}s"
        return ""

    def _set_state(self, state: str, detail: str) -> None:
        if (state, detail) != (self.state, self.detail):
            self.state, self.detail = state, detail
            self.events.state_changed(state, detail)

    def info(self) -> dict[str, object]:
        handle, ready = self.current, self.current.ready if self.current else None
        pong = handle.last_pong if handle else None
        return {
            "state": self.state, "detail": self.detail, "pid": handle.pid if handle else None,
            "model": self.spec.model, "device": ready.device if ready else None,
            "dtype": ready.dtype if ready else None, "compiled": ready.compiled if ready else None,
            "compile_error": ready.compile_error if ready else "", "boot_s": ready.boot_s if ready else None,
            "restarts": len(self.restarts), "last_restart": self.restarts[-1][1] if self.restarts else None,
            "queue_depth": len(self._waiting), "in_flight": len(self._tickets) - len(self._waiting),
            "worker_rss_bytes": pong.rss_bytes if pong else None,
            "cuda_allocated_bytes": pong.cuda_allocated_bytes if pong else None,
            "cuda_reserved_bytes": pong.cuda_reserved_bytes if pong else None,
        }
