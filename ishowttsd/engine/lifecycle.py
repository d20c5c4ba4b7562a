"""The engine worker's lifecycle as the daemon sees it: spawn, warm, retire, recycle, restart, hang checks.

Mixed into EngineClient (engine/client.py), which owns the attributes and the request side.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from ishowttsd.engine import protocol as p
from ishowttsd.engine.handle import WorkerHandle
from ishowttsd.engine.spec import EngineSpec
from ishowttsd.engine.tickets import Admission, EngineEvents, EngineLimits, Ticket


class WorkerLifecycle:
    """Needs (from EngineClient): the attributes below, _on_message, _dispatch and _fail."""

    spec: EngineSpec
    limits: EngineLimits
    events: EngineEvents
    state: str
    detail: str
    current: WorkerHandle | None
    restarts: list[tuple[float, str]]
    admission: Admission
    _ready: asyncio.Event
    _pinger: asyncio.Task[None] | None
    _seq: Any
    _on_message: Callable[[WorkerHandle, object], None]
    _dispatch: Callable[[], None]
    _fail: Callable[[Ticket, str], None]
    is_ready: Callable[[], bool]

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

    def _new_handle(self) -> WorkerHandle:
        handle = WorkerHandle(self.spec, asyncio.get_running_loop(), self._on_message, self._on_exit)
        handle.start()
        return handle

    def _spawn(self) -> WorkerHandle:
        handle = self._new_handle()
        if self.current is None or self.current.exited:
            self.current = handle
        return handle

    async def stop(self, drain_timeout_s: float) -> None:
        self._set_state("stopping", "draining")
        deadline = time.monotonic() + drain_timeout_s
        while self.admission.tickets and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if self._pinger:
            self._pinger.cancel()
        for ticket in list(self.admission.tickets.values()):
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
        new = self._new_handle()
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
        while self.admission.held_by(handle) and not handle.exited:
            await asyncio.sleep(0.05)
        await self._retire(handle)

    async def _wait_worker_ready(self, handle: WorkerHandle) -> bool:
        deadline = time.monotonic() + self.limits.boot_timeout_s
        while handle.ready is None and not handle.exited and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        return handle.ready is not None and not handle.exited

    def _on_exit(self, handle: WorkerHandle, code: int | None) -> None:
        for ticket in self.admission.held_by(handle):
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
        for ticket in list(self.admission.waiting):
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

    async def _ping_loop(self) -> None:
        while True:
            await asyncio.sleep(self.limits.ping_interval_s)
            handle = self.current
            if handle is None or handle.exited or handle.ready is None:
                continue
            handle.send(p.Ping(next(self._seq)))
            reason = self.hung_reason(handle)
            if reason:
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
