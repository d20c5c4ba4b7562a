"""Boots that yield: a standby booting beside the serving worker is paused while that one holds jobs.

A standby's boot shares the machine with the worker that serves: it is stopped (SIGSTOP; SIGCONT to
go on) while the serving worker of its slot holds jobs, within decide.boot_yield's bounds, and is
never paused once it is the one the slot waits for (nothing else serves, or a recycle took it). A
recycle's own new worker does not yield: the recycle is needed (a leak, a failed health check), and
under steady load a yielding boot runs only 1/6 of the time. Only the worker process itself is
stopped: a compile pool's processes finish what they hold and then wait for it. Checked at every
dispatch and job end (the engine client calls check()) and on a short timer while the standby
boots. Retiring a worker resumes it first (a stopped process reads no Retire). A daemon killed
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
    """Pauses and resumes the slot's standby while it boots (the standby itself says which handle)."""

    def __init__(self, slot: WorkerSlot) -> None:
        self.slot = slot
        self.forced_resume_at: float | None = None  # when a pause that hit its bound ended
        self._timer: asyncio.TimerHandle | None = None

    def check(self) -> None:
        """Pause or resume the booting standby, if there is one; keep a timer going while it boots."""
        handle = self.slot.standby.booting()
        if handle is None:
            self.forced_resume_at = None
            self._schedule(None)
            return
        rule, now = BootYield(self.slot.owner.limits.boot_yield_max_pause_s), time.monotonic()
        busy = self._serving_busy()
        since_forced = None if self.forced_resume_at is None else now - self.forced_resume_at
        if rule.should_pause(busy, handle.paused_for(now), since_forced):
            handle.pause()
        elif handle.paused_since is not None:
            self.forced_resume_at = now if busy else None
            handle.resume()
        self._schedule(handle)

    def _serving_busy(self) -> bool:
        serving = self.slot.serving()
        return serving is not None and bool(self.slot.owner.admission.held_by(serving))

    def _schedule(self, handle: WorkerHandle | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if handle is None:
            self._timer = None
            return  # a process still starting (no pid yet) can be stopped only once it exists
        tick = STARTING_TICK_S if handle.pid is None else TICK_S
        self._timer = asyncio.get_running_loop().call_later(tick, self.check)
