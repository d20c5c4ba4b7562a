"""Boots that yield: a standby booting beside the serving worker is paused while that one holds jobs.

A standby's boot shares the machine with the worker that serves: it is stopped (SIGSTOP; SIGCONT to
go on) while the serving worker of its slot holds jobs, within decide.boot_yield's bounds, and is
never paused once it is the one the slot waits for (nothing else serves, or a recycle took it). A
recycle's own new worker does not yield: the recycle is needed (a leak, a failed health check), and
under steady load a yielding boot runs only 1/6 of the time. Only the worker process itself is
stopped: a compile pool's processes finish what they hold and then wait for it. Checked at every
dispatch and job end (the engine client calls check()) and on a short timer while a boot is
watched. Retiring a worker resumes it first (a stopped process reads no Retire). A daemon killed
with SIGKILL leaves a paused boot stopped; under systemd the unit's KillMode=mixed SIGKILLs what is
left of its cgroup.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from ishowttsd.decide.boot_yield import BootYield
from ishowttsd.engine.handle import WorkerHandle

if TYPE_CHECKING:
    from ishowttsd.engine.slot import WorkerSlot

TICK_S = 0.25
STARTING_TICK_S = 0.02


class YieldingBoots:
    def __init__(self, slot: WorkerSlot) -> None:
        self.slot = slot
        self.watched: list[WorkerHandle] = []
        self.forced_resume_at: dict[WorkerHandle, float | None] = {}
        self._timer: asyncio.TimerHandle | None = None

    def watch(self, handle: WorkerHandle) -> None:
        """`handle` boots beside this slot's serving worker: yield to it until Ready."""
        if handle not in self.watched:
            self.watched.append(handle)
        self.check()

    def forget(self, handle: WorkerHandle) -> None:
        if handle in self.watched:
            self.watched.remove(handle)
        self.forced_resume_at.pop(handle, None)
        handle.resume()

    def check(self) -> None:
        """Pause or resume each watched boot; drop the ones that are Ready or gone."""
        if not self.watched:
            return
        rule = BootYield(self.slot.owner.limits.boot_yield_max_pause_s)
        busy, now = self._serving_busy(), time.monotonic()
        for handle in list(self.watched):
            if handle.ready is not None or handle.exited:
                self.forget(handle)
            elif rule.should_pause(busy, handle.paused_for(now), self._since_forced(handle, now)):
                handle.pause()
            else:
                self._resume(handle, forced=busy, now=now)
        self._schedule()

    def _since_forced(self, handle: WorkerHandle, now: float) -> float | None:
        forced_at = self.forced_resume_at.get(handle)
        return None if forced_at is None else now - forced_at

    def _resume(self, handle: WorkerHandle, forced: bool, now: float) -> None:
        """Resume; `forced`: the serving worker is still busy (the pause hit its bound)."""
        if handle.paused_since is not None:
            self.forced_resume_at[handle] = now if forced else None
            handle.resume()

    def _serving_busy(self) -> bool:
        serving = self.slot.serving()
        return serving is not None and bool(self.slot.owner.admission.held_by(serving))

    def _schedule(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self.watched:  # a process still starting (no pid yet) can be stopped only once it exists
            tick = STARTING_TICK_S if any(handle.pid is None for handle in self.watched) else TICK_S
            self._timer = asyncio.get_running_loop().call_later(tick, self.check)
        else:
            self._timer = None
