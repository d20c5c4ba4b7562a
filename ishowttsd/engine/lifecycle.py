"""The engine's workers as the daemon sees them: start, stop, recycle, pings, and the engine-wide state.

Mixed into EngineClient (engine/client.py), which owns the attributes and the request side. Each
worker's own lifecycle (spawn, warm, retire, restart, hang check) lives in its WorkerSlot
(engine/slot.py); here the slots are started, stopped, recycled and pinged together, and their
states are folded into the engine's (decide.dispatch.engine_state).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from ishowttsd.decide.dispatch import engine_state, slot_problem
from ishowttsd.engine.handle import WorkerHandle
from ishowttsd.engine.slot import WorkerSlot
from ishowttsd.engine.spec import EngineSpec
from ishowttsd.engine.standby import ENGINE_DOWN
from ishowttsd.engine.tickets import Admission, EngineEvents, EngineLimits, Ticket


class WorkerLifecycle:
    """Needs (from EngineClient): the attributes below, _fail and is_ready."""

    spec: EngineSpec
    limits: EngineLimits
    events: EngineEvents
    state: str
    detail: str
    slots: list[WorkerSlot]
    admission: Admission
    _ready: asyncio.Event
    _pinger: asyncio.Task[None] | None
    _seq: Any

    def _fail(self, ticket: Ticket, reason: str) -> None:
        raise NotImplementedError

    def is_ready(self) -> bool:
        raise NotImplementedError

    @property
    def current(self) -> WorkerHandle | None:
        """Worker 0's current process (the only one with a single device)."""
        return self.slots[0].current

    @property
    def restarts(self) -> list[tuple[float, str]]:
        """Every slot's restarts and recycles, oldest first: (monotonic time, reason)."""
        return sorted(entry for slot in self.slots for entry in slot.restarts)

    def problems(self) -> list[str]:
        """One line per worker slot not serving: "worker 1 (cuda:1) out of rotation: <reason>"."""
        if len(self.slots) == 1:
            return []
        return [problem for problem in map(slot_problem, (s.summary() for s in self.slots)) if problem]

    def set_limits(self, limits: EngineLimits) -> None:
        """New limits (a reload): the queue, restarts, pings and hang checks use them from now on."""
        self.limits = self.admission.limits = limits
        for slot in self.slots:  # standby switched on or off
            if limits.standby:
                slot.standby.ensure()
            else:
                slot.standby.discard()

    async def start(self) -> None:
        """Spawn every worker and wait until each is warm or failed."""
        self._set_state("starting", "loading model")
        for slot in self.slots:
            slot.start()
        self._pinger = asyncio.create_task(self._ping_loop(), name="engine-ping")
        await self.wait_ready(self.limits.boot_timeout_s)

    async def wait_ready(self, timeout_s: float) -> bool:
        try:
            await asyncio.wait_for(self._ready.wait(), timeout_s)
        except TimeoutError:
            return False
        return self.is_ready()

    async def stop(self, drain_timeout_s: float) -> None:
        self._set_state("stopping", "draining")
        deadline = time.monotonic() + drain_timeout_s
        while self.admission.tickets and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if self._pinger:
            self._pinger.cancel()
        for ticket in list(self.admission.tickets.values()):
            self._fail(ticket, "daemon stopping")
        await asyncio.gather(*(slot.retire(slot.current) for slot in self.slots if slot.current),
                             *(slot.standby.retire() for slot in self.slots))
        self._set_state("stopped", "")

    async def recycle(self, reason: str, overlap: bool = True, worker: int | None = None) -> bool:
        """Recycle worker slot `worker`, or (None) every slot in rotation, one after another.

        One at a time, so the other workers keep serving meanwhile. A slot out of rotation is
        recycled only when named: that is how an operator brings a failed device back.
        """
        if worker is not None:
            return 0 <= worker < len(self.slots) and await self.slots[worker].recycle(reason, overlap)
        results = [await slot.recycle(reason, overlap) for slot in self._recyclable()]
        return all(results)

    def _recyclable(self) -> list[WorkerSlot]:
        if len(self.slots) == 1:
            return self.slots
        return [slot for slot in self.slots if slot.state != "failed"]

    async def _ping_loop(self) -> None:
        while True:
            await asyncio.sleep(self.limits.ping_interval_s)
            for slot in self.slots:
                slot.ping(next(self._seq))

    def _slot_changed(self, slot: WorkerSlot) -> None:
        """A slot changed state: refresh the engine's, fail what can no longer be served."""
        if self.state not in ENGINE_DOWN:  # states the engine sets itself, whatever its slots say
            self._set_state(*engine_state([s.summary() for s in self.slots]))
        if slot.state == "failed":
            self._fail_unservable(slot)
        if all(s.settled for s in self.slots):
            self._ready.set()

    def _fail_unservable(self, slot: WorkerSlot) -> None:
        everyone_failed = self.state == "failed"
        for ticket in list(self.admission.waiting):
            if everyone_failed or ticket.pinned == slot.index:
                self._fail(ticket, slot.detail if everyone_failed else f"{slot.label} out of rotation")

    def _set_state(self, state: str, detail: str) -> None:
        if (state, detail) != (self.state, self.detail):
            self.state, self.detail = state, detail
            self.events.state_changed(state, detail)
