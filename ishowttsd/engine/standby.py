"""A warm standby worker for a slot (`[engine] standby = true`): a crash or a recycle switches to it at once.

A compiled GPU worker takes tens of seconds to boot (docs/benchmarks.md: model load, the compile
cache's reload, a graph capture per bucket, the vocoder's compile); a standby has paid all that
before it is needed. It boots once the slot's worker is ready, takes no jobs, answers pings (a dead,
hung or stuck-booting standby is replaced, with the restart policy's backoff) and holds the memory
of a second worker, GPU memory included. It boots in the serving worker's idle time
(engine/yielding.py). A standby of an older engine spec (a reload changed the
engine) is retired, never used; one that cannot boot is not retried until the slot's next recycle.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from ishowttsd.engine import protocol as p
from ishowttsd.engine.handle import WorkerHandle

if TYPE_CHECKING:
    from ishowttsd.engine.slot import WorkerSlot

ENGINE_DOWN = ("stopping", "stopped")  # engine states in which no worker is started


class Standby:
    def __init__(self, slot: WorkerSlot) -> None:
        self.slot = slot
        self.handle: WorkerHandle | None = None
        self.exits: list[float] = []  # monotonic times of unplanned standby exits (the backoff's history)
        self.detail = ""  # why there is no standby ("could not boot: ...")
        self._pending: asyncio.TimerHandle | None = None
        self._reported = ""

    @property
    def enabled(self) -> bool:
        return self.slot.owner.limits.standby

    def state(self) -> str:
        """off (not configured), none (being replaced), booting, ready, failed (could not boot)."""
        if not self.enabled:
            return "off"
        if self.handle is None:
            return "failed" if self.detail else "none"
        return "ready" if self.handle.ready is not None else "booting"

    def info(self) -> dict[str, object]:
        handle = self.handle
        return {"state": self.state(), "detail": self.detail, "pid": handle.pid if handle else None,
                "boot_s": handle.ready.boot_s if handle and handle.ready else None}

    def owns(self, handle: WorkerHandle) -> bool:
        return handle is self.handle

    def booting(self) -> WorkerHandle | None:
        """The standby while it boots (what engine/yielding.py pauses), else None."""
        handle = self.handle
        return handle if handle is not None and handle.ready is None and not handle.exited else None

    # ---- starting and handing over ---------------------------------------------------------
    def ensure(self) -> None:
        """Start a standby (after the backoff its recent exits ask for) unless one exists or none is wanted."""
        if self.handle is not None or self._pending is not None or not self._wanted():
            self._report()
            return
        policy = self.slot.restart_policy()
        replaced_before = max(0, policy.recent(self.exits, time.monotonic()) - 1)  # the first one: at once
        delay = policy.delay_for(replaced_before)
        self._pending = asyncio.get_running_loop().call_later(delay, self._spawn)
        self._report()

    def _wanted(self) -> bool:
        slot = self.slot
        return (self.enabled and not self.detail and slot.owner.state not in ENGINE_DOWN
                and slot.serving() is not None)

    def _spawn(self) -> None:
        self._pending = None
        if self.handle is None and self._wanted():
            self.handle = self.slot.new_handle()
            self.slot.yielding.check()
        self._report()

    def take(self) -> WorkerHandle | None:
        """The standby, handed over to serve; None when there is none of the slot's current spec."""
        handle = self.handle
        if handle is not None and not handle.exited and handle.spec != self.slot.spec:
            self.discard()
        elif handle is not None and not handle.exited:
            self.handle = None
            handle.resume()  # from now on the slot waits for it: it boots at full speed
            self._report()
            return handle
        return None

    def reset(self) -> None:
        """Forget a boot failure (a recycle may have fixed its cause): the next ensure() tries again."""
        self.detail = ""

    # ---- retiring ---------------------------------------------------------------------------
    def discard(self) -> None:
        """Retire the standby in the background (a spec change, standby switched off, the slot halted)."""
        handle = self._drop()
        if handle is not None:
            asyncio.get_running_loop().create_task(self.slot.retire(handle))

    async def retire(self) -> None:
        handle = self._drop()
        if handle is not None:
            await self.slot.retire(handle)

    def _drop(self) -> WorkerHandle | None:
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None
        handle, self.handle = self.handle, None
        self._report()
        return handle if handle is not None and not handle.exited else None

    # ---- messages, exits, liveness -----------------------------------------------------------
    def on_ready(self) -> None:
        self._report()

    def on_exit(self, handle: WorkerHandle, code: int | None) -> None:
        self.handle = None
        if code == p.EXIT_BOOT_FAILURE or (handle.ready is None and handle.boot_failure):
            self.detail = f"could not boot: {handle.boot_failure or f'exit {code}'}"
        elif not handle.retiring:
            self.exits.append(time.monotonic())
        self.ensure()

    def ping(self, seq: int) -> None:
        handle = self.handle
        if handle is None or handle.exited:
            return
        if handle.ready is None:
            if handle.running_s(time.monotonic()) > self.slot.owner.limits.boot_timeout_s:
                handle.kill()  # stuck booting: its exit starts another
            return
        handle.send(p.Ping(seq))
        if self.slot.hung_reason(handle):
            handle.kill()

    def _report(self) -> None:
        state = self.state()
        if state != self._reported:
            self._reported = state
            self.slot.owner.events.standby_state(self.slot.index, self.slot.device, state)
