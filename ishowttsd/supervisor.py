"""The watchdog supervisor: decides, from a thread of its own, whether systemd's watchdog is fed.

Alive means answering: the event loop beats (a task stamps it every second), the worker answers
pings, and a canary synthesis through the real engine succeeded recently. The decision itself is
the pure `decide.watchdog.should_pet`; this module only gathers its facts and acts on the result.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from ishowttsd.decide.watchdog import PetDecision, should_pet
from ishowttsd.engine.client import EngineClient, SynthesisRequest
from ishowttsd.systemd import Notifier

log = structlog.get_logger(__name__)
WATCHDOG_STATES = {"starting", "restarting", "recycling", "ready", "failed"}


@dataclass(frozen=True)
class SupervisorSettings:
    interval_s: float = 5.0
    loop_max_age_s: float = 10.0
    worker_max_age_s: float = 15.0
    canary_interval_s: float = 60.0
    canary_max_age_s: float = 300.0
    boot_grace_s: float = 900.0
    max_failed_recoveries: int = 3


class Supervisor:
    def __init__(self, engine: EngineClient, notifier: Notifier, settings: SupervisorSettings,
                 canary_request: Callable[[], SynthesisRequest], status_line: Callable[[], str]) -> None:
        self.engine, self.notifier, self.settings = engine, notifier, settings
        self.canary_request, self.status_line = canary_request, status_line
        self.loop_beat = time.monotonic()
        self.canary_ok_at: float | None = None
        self.canary_error = ""
        self.canary_failed_worker: int | None = None
        self.failed_recoveries = 0
        self.last_decision = PetDecision(True, "starting")
        self._state_since = time.monotonic()
        self._seen_state = engine.state
        self._recovering = False
        self._stop = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._interval_changed = asyncio.Event()

    # ---- event-loop side -------------------------------------------------------------------
    async def run_loop_tasks(self) -> None:
        """Beat every second and run the canary; cancelled on shutdown."""
        self._loop = asyncio.get_running_loop()
        thread = threading.Thread(target=self._thread_main, name="watchdog-supervisor", daemon=True)
        thread.start()
        try:
            await asyncio.gather(self._beat(), self._canary_loop())
        finally:
            self._stop.set()

    async def _beat(self) -> None:
        while True:
            self.loop_beat = time.monotonic()
            await asyncio.sleep(1.0)

    async def _canary_loop(self) -> None:
        while True:
            if self.engine.is_ready():
                await self.run_canary()
            await self._canary_pause()

    async def _canary_pause(self) -> None:
        """canary_interval_s, cut short when a reload changes it: the next canary runs then, on the new one."""
        self._interval_changed.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._interval_changed.wait(), self.settings.canary_interval_s)

    def set_settings(self, settings: SupervisorSettings) -> None:
        """New settings (a reload): the next decision uses them; a new canary interval applies at once."""
        if settings.canary_interval_s != self.settings.canary_interval_s:
            self._interval_changed.set()
        self.settings = settings

    async def run_canary(self) -> bool:
        """One canary through every worker in rotation (pinned to it); ok only when all answer."""
        failed = [worker for worker in self._canary_targets() if not await self._canary_through(worker)]
        self.canary_failed_worker = failed[0] if failed else None
        if failed:
            return False
        self.canary_ok_at, self.canary_error = time.monotonic(), ""
        return True

    def _canary_targets(self) -> list[int | None]:
        """[None] (any worker) with one worker; else each serving slot's index."""
        slots = self.engine.slots
        serving = [slot.index for slot in slots if slot.serving() is not None]
        return list(serving) if len(slots) > 1 and serving else [None]

    async def _canary_through(self, worker: int | None) -> bool:
        request = self.canary_request()
        try:
            async for _ in self.engine.synthesize(dataclasses.replace(request, worker=worker)):
                pass
        except Exception as exc:
            where = "" if worker is None else f"worker {worker}: "
            self.canary_error = f"{where}{type(exc).__name__}: {exc}"
            log.warning("canary_failed", error=self.canary_error, worker=worker)
            return False
        return True

    # ---- supervisor thread -----------------------------------------------------------------
    def _thread_main(self) -> None:
        interval = min(self.notifier.watchdog_interval() or self.settings.interval_s, self.settings.interval_s)
        while not self._stop.wait(interval):
            self.tick(time.monotonic())

    def tick(self, now: float) -> PetDecision:
        decision = self.decide(now)
        self.last_decision = decision
        if decision.pet:
            self.notifier.watchdog()
        if decision.action == "recycle_worker" and not self._recovering:
            self._request_recycle(decision.reason)
        self.notifier.status(self.status_line())
        return decision

    def decide(self, now: float) -> PetDecision:
        state = self.engine.state
        if state != self._seen_state:
            self._seen_state, self._state_since = state, now
        return should_pet(
            now, self.loop_beat, self._oldest_pong()[1],
            self.canary_ok_at, state if state in WATCHDOG_STATES else "ready",
            loop_max_age_s=self.settings.loop_max_age_s, worker_max_age_s=self.settings.worker_max_age_s,
            canary_max_age_s=self.settings.canary_max_age_s,
            boot_grace_until_s=self._state_since + self.settings.boot_grace_s,
            failed_recoveries=self.failed_recoveries, max_failed_recoveries=self.settings.max_failed_recoveries)

    def _oldest_pong(self) -> tuple[int, float | None]:
        """(slot index, last pong) of the quietest worker in rotation (never seen = quietest)."""
        slots = [slot for slot in self.engine.slots if slot.state != "failed"] or self.engine.slots[:1]
        pongs = [(slot.index, slot.current.last_pong_at if slot.current else None) for slot in slots]
        return min(pongs, key=lambda pong: -1.0 if pong[1] is None else pong[1])

    def _suspect(self, reason: str) -> int | None:
        """The worker slot to recycle (None: every worker; always None with a single worker)."""
        if len(self.engine.slots) == 1:
            return None
        if reason.startswith("worker silent"):
            return self._oldest_pong()[0]
        return self.canary_failed_worker

    def _request_recycle(self, reason: str) -> None:
        if self._loop is None:
            return
        self._recovering = True
        log.warning("watchdog_recycle", reason=reason)
        future = asyncio.run_coroutine_threadsafe(self._recycle(reason), self._loop)
        future.add_done_callback(lambda f: setattr(self, "_recovering", False))

    async def _recycle(self, reason: str) -> None:
        worker = self._suspect(reason)
        ok = await self.engine.recycle(f"watchdog: {reason}", overlap=False, worker=worker) \
            and await self.run_canary()
        self.failed_recoveries = 0 if ok else self.failed_recoveries + 1

    def snapshot(self) -> dict[str, object]:
        now = time.monotonic()
        return {
            "pet": self.last_decision.pet, "reason": self.last_decision.reason,
            "canary_age_s": None if self.canary_ok_at is None else round(now - self.canary_ok_at, 1),
            "canary_error": self.canary_error, "canary_failed_worker": self.canary_failed_worker,
            "failed_recoveries": self.failed_recoveries,
            "loop_age_s": round(now - self.loop_beat, 1),
        }
