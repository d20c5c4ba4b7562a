"""Clock lock (R1, R5, R35): lock before READY, read back every few minutes, re-apply on drift,
restore on stop.

The daemon runs unprivileged; the root helper (ExecStartPre=+ ... clockhelper lock) normally
locks before the daemon starts, and ExecStopPost=+ restores. So: verify first, apply only when
the lock is not in force, and say "permission denied" plainly when the kernel/driver refuses.
On drift (or a health re-lock) that the daemon may not fix itself, it asks root: it writes
RUNTIME_DIR/relock-request, ishowttsd-relock.path starts ishowttsd-relock.service (root,
`clockhelper relock`), which answers in RUNTIME_DIR/relock-result.json; the next check reads the
answer, reports it and counts a re-lock done by the helper.
Drift policy (how often to re-apply before giving up) is the pure decide.drift.next_action.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
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
from ishowttsd.hw.clockhelper import RelockFiles
from ishowttsd.jobs.context import JobContext, JobOutcome, set_degraded

log = structlog.get_logger(__name__)
DEGRADED_KEY = "clocks"
DRIFT_TOLERANCE_PCT = 1.0
NEEDS_ROOT = "needs root: the root clock helper (ExecStartPre=+) re-applies the lock at the next start"
RELOCK_REQUESTED = "re-lock requested from the root helper (ishowttsd-relock.path)"
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


def with_answer(outcome: JobOutcome, answer: Mapping[str, Any] | None) -> JobOutcome:
    """The check's outcome, telling what the root helper answered to the last re-lock request."""
    if answer is None:
        return outcome
    said = answer.get("message") or answer.get("error") or "no message"
    return replace(outcome, summary=f"{outcome.summary}; root helper: {said}",
                   details={**outcome.details, "root_relock": dict(answer)})


def lock_summary(result: ClockResult) -> str:
    """One line for a lock/restore result, naming permission problems plainly."""
    if result.permission_denied:
        return f"permission denied ({result.message}); {NEEDS_ROOT}"
    return result.message or ("ok" if result.ok else "failed")


class ClockKeeper:
    """Owns the clock lock for the daemon: start-up lock, periodic read-back, restore on stop."""

    def __init__(self, ctx: JobContext, relock_files: RelockFiles | None = None) -> None:
        self.ctx = ctx
        self.track = ClockTrackState()
        self.last_state: ClockState | None = None
        self.last_result: ClockResult | None = None
        self.applied_here = False
        self._relock_files = relock_files
        self.pending_request: dict[str, Any] | None = None
        self.root_relocks = 0

    @property
    def relock_files(self) -> RelockFiles:
        """Injected, else next to the configured socket (read at call time: reloads apply)."""
        return self._relock_files or RelockFiles.for_config(self.ctx.get_config())

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

    async def _apply_and_confirm(self, why: str, ask_root: bool = False) -> JobOutcome:
        result = await self._apply()
        state = await self.read()
        details = {"lock": lock_summary(result), "read_back": state.reason, "locked": state.locked}
        if state.locked is True or (result.ok and state.locked is None):
            set_degraded(self.ctx.status_sources, DEGRADED_KEY, None)
            return JobOutcome("ok", f"{why}: clocks locked ({state.reason})", details)
        problem = f"clocks not locked: {lock_summary(result)}"
        if ask_root and result.permission_denied:
            request = details["relock_request"] = await self._request_root_relock(why)
            asked = request.get("error") or RELOCK_REQUESTED
            problem = f"clocks not locked: permission denied in the daemon; {asked}"
        if state.locked is False:  # "cannot tell" (idle GPU) is reported, not shown as degraded
            set_degraded(self.ctx.status_sources, DEGRADED_KEY, problem)
        log.error("clock_lock_failed", when=why, **details)
        return JobOutcome("flagged", f"{why}: {problem}", details)

    async def check(self) -> JobOutcome:
        """R5: the periodic read-back; re-apply on drift (bounded by decide.drift.next_action)."""
        if not self._enabled():
            return JobOutcome("skipped", DISABLED)
        answer = await self._collect_answer()
        state = await self.read()
        drift = drift_of(state)
        decision = next_action(self.track, drift, self.ctx.clock())
        self.track = decision.state
        if drift.drifted:
            self._count_drift(decision, state)
        outcome = await ACTIONS[decision.action](self, decision, state)
        return with_answer(outcome, answer)

    async def _request_root_relock(self, why: str) -> dict[str, Any]:
        """Ask the root relock service (through its path unit) to re-apply the lock."""
        files = self.relock_files
        try:
            self.pending_request = await asyncio.to_thread(files.write_request, why, self.ctx.clock())
        except OSError as exc:
            log.error("clock_relock_request_failed", request=str(files.request_path), error=str(exc))
            return {"error": f"cannot write {files.request_path}: {exc}"}
        log.warning("clock_relock_requested", reason=why, request=str(files.request_path),
                    request_id=self.pending_request["id"])
        return self.pending_request

    async def _collect_answer(self) -> dict[str, Any] | None:
        """The root helper's answer to our pending request (None: nothing pending)."""
        if self.pending_request is None:
            return None
        result = await asyncio.to_thread(self.relock_files.read_result)
        if not result or (result.get("request") or {}).get("id") != self.pending_request["id"]:
            age = self.ctx.clock() - float(self.pending_request["time_s"])
            return {"pending": True, "message": f"no answer {age:.0f} s after the re-lock request "
                    "(is ishowttsd-relock.path active?)"}
        self.pending_request = None
        self.root_relocks += int(bool(result.get("relocked")) and bool(result.get("ok")))
        log.info("clock_relock_answered", ok=result.get("ok"), relocked=result.get("relocked"),
                 locked=result.get("locked"), message=result.get("message"), root_relocks=self.root_relocks)
        return {**result, "root_relocks": self.root_relocks}

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
        outcome = await self._apply_and_confirm(f"re-apply after {decision.reason}", ask_root=True)
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
        outcome = await self._apply_and_confirm("health re-lock", ask_root=True)
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
