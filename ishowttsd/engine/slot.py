"""One engine worker slot: a device, the worker serving on it now, its restarts, recycles and hang checks.

The engine client (engine/client.py) holds one slot per configured device and one admission queue
for all of them. A slot whose worker cannot boot, or that runs out of restarts within the restart
window, is "failed": out of rotation, reported, while the other slots keep serving. With
`[engine] standby` a slot also keeps a warm standby worker (engine/standby.py): a crash, hang or
recycle switches to it instead of waiting for a fresh worker's boot.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Protocol

from ishowttsd.decide.dispatch import SlotState
from ishowttsd.decide.restart import RestartPolicy
from ishowttsd.engine import protocol as p
from ishowttsd.engine.handle import WorkerHandle
from ishowttsd.engine.spec import EngineSpec
from ishowttsd.engine.standby import ENGINE_DOWN, Standby
from ishowttsd.engine.tickets import Admission, EngineEvents, EngineLimits, Ticket
from ishowttsd.engine.yielding import YieldingBoots

SETTLED = ("ready", "failed")


class SlotOwner(Protocol):
    """What a slot uses of the engine client."""

    spec: EngineSpec
    limits: EngineLimits
    events: EngineEvents
    admission: Admission
    state: str

    def _on_slot_message(self, slot: WorkerSlot, handle: WorkerHandle, message: object) -> None: ...

    def _fail(self, ticket: Ticket, reason: str) -> None: ...

    def _dispatch(self) -> None: ...

    def _slot_changed(self, slot: WorkerSlot) -> None: ...


class WorkerSlot:
    def __init__(self, owner: SlotOwner, index: int, device: str | None) -> None:
        """device None: follow the engine spec's device (the single-worker daemon, reloads included)."""
        self.owner, self.index, self.configured = owner, index, device
        self.current: WorkerHandle | None = None
        self.restarts: list[tuple[float, str]] = []
        self.state, self.detail = "stopped", ""
        self.settled = False  # ready or failed at least once (start() waits for every slot)
        self.jobs_finished = 0
        self.standby = Standby(self)
        self.yielding = YieldingBoots(self)  # a booting standby pauses while the serving worker works

    @property
    def device(self) -> str:
        return self.configured or self.owner.spec.device

    @property
    def label(self) -> str:
        return f"worker {self.index} ({self.device})"

    @property
    def spec(self) -> EngineSpec:
        """The engine's spec (reloads replace it) on this slot's device."""
        spec = self.owner.spec
        return spec if spec.device == self.device else dataclasses.replace(spec, device=self.device)

    def serving(self) -> WorkerHandle | None:
        handle = self.current
        if handle is None or handle.ready is None or handle.exited or handle.retiring:
            return None
        return handle

    def summary(self) -> SlotState:
        return SlotState(self.label, self.state, self.detail, self.serving() is not None)

    # ---- spawning ---------------------------------------------------------------------------
    def start(self) -> None:
        self.set_state("starting", "loading model")
        self.spawn()

    def new_handle(self) -> WorkerHandle:
        handle = WorkerHandle(self.spec, asyncio.get_running_loop(),
                              lambda h, message: self.owner._on_slot_message(self, h, message), self.on_exit)
        handle.start()
        return handle

    def spawn(self) -> WorkerHandle:
        handle = self.new_handle()
        if self.current is None or self.current.exited:
            self.current = handle
        return handle

    def on_ready(self, handle: WorkerHandle) -> None:
        if handle is self.current:
            self.set_state("ready", "")
            self.owner._dispatch()
            self.standby.ensure()
        elif self.standby.owns(handle):
            self.standby.on_ready()

    # ---- retiring and recycling -------------------------------------------------------------
    async def retire(self, handle: WorkerHandle, timeout_s: float = 10.0) -> None:
        handle.resume()  # a stopped process would never read Retire
        handle.retiring = True
        handle.send(p.Retire())
        if not await handle.wait_exit(timeout_s):
            handle.kill()
            await handle.wait_exit(5.0)

    async def recycle(self, reason: str, overlap: bool = True) -> bool:
        """Start a fresh worker, switch to it when warm, let the old one finish its jobs and exit."""
        old = self.current
        self.set_state("recycling", reason)
        self.standby.reset()
        # Its memory is already held: overlap does not matter. A recycle is needed (a leak, a failed
        # health check), so its new worker never yields, not even a standby still booting (take()
        # resumes it: under steady load a yielding boot runs 1/6 of the time).
        new = self.standby.take()
        if new is None:
            if old and not overlap:
                await self.drain(old)
            new = self.new_handle()
        if not await self.wait_worker_ready(new):
            new.kill()
            alive = old is not None and old.ready is not None and not old.exited
            self.set_state("ready" if alive else "failed", f"recycle failed: {reason}")
            return False
        self.current = new
        self.note_restart(reason)
        self.set_state("ready", "")
        self.owner._dispatch()
        if old and not old.exited:
            # Every job the old worker holds runs to its end (each is bounded by its own deadline) before
            # it is told to exit: a slow last batch is not killed mid-way (that would fail its requests).
            await self.drain(old)
        self.standby.ensure()
        return True

    async def drain(self, handle: WorkerHandle) -> None:
        handle.retiring = True
        while self.owner.admission.held_by(handle) and not handle.exited:
            await asyncio.sleep(0.05)
        await self.retire(handle)

    async def wait_worker_ready(self, handle: WorkerHandle) -> bool:
        """Ready within boot_timeout_s of running (time paused while yielding does not count)."""
        limit = self.owner.limits.boot_timeout_s
        while handle.ready is None and not handle.exited and handle.running_s(time.monotonic()) < limit:
            await asyncio.sleep(0.05)
        return handle.ready is not None and not handle.exited

    # ---- exits, restarts, halts ---------------------------------------------------------------
    def on_exit(self, handle: WorkerHandle, code: int | None) -> None:
        for ticket in self.owner.admission.held_by(handle):
            self.owner._fail(ticket, f"engine worker exited (code {code})")
        if self.standby.owns(handle):
            self.standby.on_exit(handle, code)
        if handle is not self.current or self.owner.state in ENGINE_DOWN:
            return
        if code == p.EXIT_BOOT_FAILURE or (handle.ready is None and handle.boot_failure):
            self.halt(handle.boot_failure or f"worker could not boot (exit {code})")
        else:
            asyncio.get_running_loop().create_task(self.restart(f"worker exited (code {code})"))

    def halt(self, reason: str) -> None:
        """Out of rotation: the engine fails what only this slot could serve."""
        self.standby.discard()
        self.set_state("failed", reason)

    async def restart(self, reason: str) -> None:
        """A warm standby takes over at once; else a new worker, after the policy's backoff."""
        decision = self.restart_policy().decide([t for t, _ in self.restarts], time.monotonic(), None)
        if decision.action == "halt":
            self.halt(f"{decision.reason}; last: {reason}")
            return
        self.note_restart(reason)
        standby = self.standby.take()
        if standby is not None:
            self.promote(standby, reason)
            return
        wait = f"; next try in {decision.delay_s:.0f}s" if decision.delay_s else ""
        self.set_state("restarting", reason + wait)
        self.current = None
        await asyncio.sleep(decision.delay_s)
        if self.current is None and self.owner.state not in ENGINE_DOWN:
            self.spawn()

    def promote(self, standby: WorkerHandle, reason: str) -> None:
        """The standby serves from now on (once warm, if it is still booting)."""
        self.current = standby  # take() resumed it if it was paused: nothing else serves
        if standby.ready is None:
            self.set_state("restarting", f"{reason}; standby still warming")
            return
        self.set_state("ready", "")
        self.owner._dispatch()
        self.standby.ensure()

    def restart_policy(self) -> RestartPolicy:
        return RestartPolicy(self.owner.limits.max_restarts, self.owner.limits.restart_window_s)

    def note_restart(self, reason: str) -> None:
        self.restarts.append((time.monotonic(), reason))
        cause = reason.split(" (")[0]
        self.owner.events.restarted(cause)
        self.owner.events.worker_restarted(self.index, self.device, cause)

    # ---- liveness -----------------------------------------------------------------------------
    def ping(self, seq: int) -> None:
        self.standby.ping(seq)
        handle = self.current
        if handle is None or handle.exited or handle.ready is None:
            return
        handle.send(p.Ping(seq))
        reason = self.hung_reason(handle)
        if reason:
            handle.kill()  # its exit restarts it through the normal path
            self.set_state("restarting", reason)

    def hung_reason(self, handle: WorkerHandle) -> str:
        now, limit = time.monotonic(), self.owner.limits.heartbeat_timeout_s
        if now - handle.last_pong_at > limit and now - handle.started_at > limit:
            return f"worker hung: no pong for {now - handle.last_pong_at:.0f}s"
        pong = handle.last_pong
        if pong and pong.busy_job and pong.progress_age_s > limit:
            return f"worker hung: no progress on job {pong.busy_job} for {pong.progress_age_s:.0f}s"
        return ""

    def set_state(self, state: str, detail: str) -> None:
        if (state, detail) != (self.state, self.detail):
            self.state, self.detail = state, detail
            self.settled = self.settled or state in SETTLED
            self.owner.events.worker_state(self.index, self.device, state)
            self.owner._slot_changed(self)
