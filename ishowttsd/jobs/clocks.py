"""Clock lock (R1, R5, R35): lock before READY, read back every few minutes, re-apply on drift,
restore on stop.

The daemon runs unprivileged; the root helper (ExecStartPre=+ ... clockhelper lock) normally
locks before the daemon starts, and ExecStopPost=+ restores. So: verify first, apply only when
the lock is not in force, and say "permission denied" plainly when the kernel/driver refuses.
Drift policy (how often to re-apply before giving up) is the pure decide.drift.next_action.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import structlog

from ishowttsd.decide.drift import (
    ClockDecision,
    ClockTrackState,
    DriftReport,
    detect_clock_drift,
    next_action,
)
from ishowttsd.hw.base import ClockResult, ClockState
from ishowttsd.jobs.context import JobContext, JobOutcome, set_degraded

log = structlog.get_logger(__name__)
DEGRADED_KEY = "clocks"
DRIFT_TOLERANCE_PCT = 1.0
NEEDS_ROOT = "needs root: the root clock helper (ExecStartPre=+) re-applies the lock at the next start"
DISABLED = "gpu.lock_clocks = false: clocks left alone"
# (target field, observed field) pairs in ClockState.details (NVML per device, Jetson devfreq).
CLOCK_PAIRS: tuple[tuple[str, str], ...] = (
    ("target_mhz", "sm_clock_mhz"), ("target_hz", "min_hz"), ("target_hz", "max_hz"), ("target_hz", "cur_hz"),
)


def _detail_groups(details: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """{prefix: flat details}: the top level plus one level of per-device dicts (NVML)."""
    groups: dict[str, Mapping[str, Any]] = {"": details}
    groups.update({f"{name}.": value for name, value in details.items() if isinstance(value, Mapping)})
    return groups


def clock_pairs(details: Mapping[str, Any]) -> tuple[dict[str, float], dict[str, float]]:
    """(expected, observed) clock fields read back from a ClockState's details."""
    expected: dict[str, float] = {}
    observed: dict[str, float] = {}
    for prefix, group in _detail_groups(details).items():
        for target, field in CLOCK_PAIRS:
            if isinstance(group.get(target), int | float) and isinstance(group.get(field), int | float):
                expected[prefix + field], observed[prefix + field] = group[target], group[field]
    return expected, observed


def drift_of(state: ClockState) -> DriftReport:
    """Drift as the backend judged it (locked is False), described field by field where possible."""
    if state.locked is not False:
        return DriftReport(drifted=False)
    report = detect_clock_drift(*clock_pairs(state.details), DRIFT_TOLERANCE_PCT)
    return report if report.drifted else DriftReport(drifted=True, fields={"locked": (1.0, 0.0)})


def not_applicable(state: ClockState) -> bool:
    return bool(state.details.get("not_applicable"))


def lock_summary(result: ClockResult) -> str:
    """One line for a lock/restore result, naming permission problems plainly."""
    if result.permission_denied:
        return f"permission denied ({result.message}); {NEEDS_ROOT}"
    return result.message or ("ok" if result.ok else "failed")


class ClockKeeper:
    """Owns the clock lock for the daemon: start-up lock, periodic read-back, restore on stop."""

    def __init__(self, ctx: JobContext) -> None:
        self.ctx = ctx
        self.track = ClockTrackState()
        self.last_state: ClockState | None = None
        self.last_result: ClockResult | None = None
        self.applied_here = False

    def locked(self) -> bool | None:
        """For the STATUS= line: the last read-back (None: unknown or not applicable)."""
        return self.last_state.locked if self.last_state else None

    def _enabled(self) -> bool:
        return self.ctx.get_config().gpu.lock_clocks

    async def read(self) -> ClockState:
        """Read the lock back and publish it (gauge, STATUS=); never acts."""
        state = await self.ctx.hw(self.ctx.backend.verify_clocks)
        self.last_state = state
        if state.locked is not None:
            for device in self.ctx.backend.devices():
                self.ctx.metrics.set_clock_locked(device, state.locked)
        return state

    async def _apply(self) -> ClockResult:
        result = await self.ctx.hw(self.ctx.backend.lock_clocks)
        self.last_result = result
        self.applied_here = self.applied_here or (result.ok and not result.not_applicable)
        log.info("clock_lock_applied", ok=result.ok, permission_denied=result.permission_denied,
                 message=result.message, applied=result.applied)
        return result

    async def lock_at_start(self) -> JobOutcome:
        """R1/R35: before READY. Verify; apply only when not already locked (e.g. by the root helper)."""
        if not self._enabled():
            return JobOutcome("skipped", DISABLED)
        state = await self.read()
        if state.locked or not_applicable(state):
            log.info("clock_lock_at_start", locked=state.locked, reason=state.reason)
            return JobOutcome("ok" if state.locked else "skipped", state.reason)
        return await self._apply_and_confirm("start-up")

    async def _apply_and_confirm(self, why: str) -> JobOutcome:
        result = await self._apply()
        state = await self.read()
        details = {"lock": lock_summary(result), "read_back": state.reason, "locked": state.locked}
        if state.locked is True or (result.ok and state.locked is None):
            set_degraded(self.ctx.status_sources, DEGRADED_KEY, None)
            return JobOutcome("ok", f"{why}: clocks locked ({state.reason})", details)
        problem = f"clocks not locked: {lock_summary(result)}"
        if state.locked is False:  # "cannot tell" (idle GPU) is reported, not shown as degraded
            set_degraded(self.ctx.status_sources, DEGRADED_KEY, problem)
        log.error("clock_lock_failed", when=why, **details)
        return JobOutcome("flagged", f"{why}: {problem}", details)

    async def check(self) -> JobOutcome:
        """R5: the periodic read-back; re-apply on drift (bounded by decide.drift.next_action)."""
        if not self._enabled():
            return JobOutcome("skipped", DISABLED)
        state = await self.read()
        drift = drift_of(state)
        decision = next_action(self.track, drift, self.ctx.clock())
        self.track = decision.state
        if drift.drifted:
            self._count_drift(decision, state)
        return await ACTIONS[decision.action](self, decision, state)

    def _count_drift(self, decision: ClockDecision, state: ClockState) -> None:
        for device in self.ctx.backend.devices() or ["gpu"]:
            self.ctx.metrics.observe_clock_drift(device)
        log.warning("clock_drift", reason=decision.reason, read_back=state.reason,
                    drift_count=decision.state.drift_count, action=decision.action)

    async def _in_lock(self, decision: ClockDecision, state: ClockState) -> JobOutcome:
        """No action: either in lock (or cannot tell), or still lost after giving up."""
        if state.locked is False:
            return JobOutcome("flagged", f"clocks not locked: {decision.reason}",
                              {"locked": False, "drift_count": self.track.drift_count})
        set_degraded(self.ctx.status_sources, DEGRADED_KEY, None)
        status = "skipped" if not_applicable(state) else "ok"
        return JobOutcome(status, state.reason or decision.reason, {"locked": state.locked})

    async def _reapply(self, decision: ClockDecision, state: ClockState) -> JobOutcome:
        outcome = await self._apply_and_confirm(f"re-apply after {decision.reason}")
        return JobOutcome(outcome.status, outcome.summary, {**outcome.details, "drift": decision.reason,
                                                            "drift_count": self.track.drift_count})

    async def _give_up(self, decision: ClockDecision, state: ClockState) -> JobOutcome:
        problem = f"lock keeps getting lost ({decision.reason}); stopped re-applying until it holds again"
        set_degraded(self.ctx.status_sources, DEGRADED_KEY, problem)
        log.error("clock_drift_gave_up", reason=decision.reason, read_back=state.reason)
        return JobOutcome("flagged", problem, {"drift_count": self.track.drift_count})

    async def relock(self) -> str:
        """For the health job (R22): re-apply the lock now; returns what happened."""
        if not self._enabled():
            return DISABLED
        outcome = await self._apply_and_confirm("health re-lock")
        return outcome.summary

    async def restore_at_stop(self) -> JobOutcome:
        """Restore only a lock this process applied; the root helper's lock is restored by ExecStopPost=+."""
        if not self.applied_here:
            return JobOutcome("skipped", "lock not applied by the daemon: ExecStopPost=+ restores it")
        result = await self.ctx.hw(self.ctx.backend.restore_clocks)
        log.info("clock_restore", ok=result.ok, message=result.message)
        self.applied_here = not result.ok
        return JobOutcome("ok" if result.ok else "flagged", lock_summary(result), {"applied": result.applied})


ClockAction = Callable[[ClockKeeper, ClockDecision, ClockState], Awaitable[JobOutcome]]
ACTIONS: dict[str, ClockAction] = {
    "none": ClockKeeper._in_lock, "reapply": ClockKeeper._reapply, "give_up": ClockKeeper._give_up,
}
