"""Clock-lock drift (R5): compare read-back clocks with the applied lock, decide what to do.

Pure: readings, state and time are arguments; the state is an immutable value returned updated.
Re-applying is bounded: after `max_reapplies` re-applies within `window_s` the job gives up
(reports, stops fighting whatever keeps undoing the lock) until the clocks read back in lock again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Literal

ClockAction = Literal["none", "reapply", "give_up"]
DEFAULT_MAX_REAPPLIES = 3
DEFAULT_REAPPLY_WINDOW_S = 3600.0


@dataclass(frozen=True, slots=True)
class DriftReport:
    """`fields`: name → (expected, observed) for every field outside tolerance.

    `missing`: expected fields that could not be read back (not counted as drift: a failed read
    is reported, not "fixed" by re-applying).
    """

    drifted: bool
    fields: dict[str, tuple[float, float]] = field(default_factory=dict)
    missing: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ClockTrackState:
    """What the clock job remembers between checks: recent re-applies and lifetime counters."""

    reapply_times_s: tuple[float, ...] = ()
    drift_count: int = 0
    reapply_count: int = 0
    gave_up: bool = False


@dataclass(frozen=True, slots=True)
class ClockDecision:
    """The action to take now, the state to keep for next time, and a human reason."""

    action: ClockAction
    state: ClockTrackState
    reason: str


def _outside(expected: float, observed: float, tolerance_pct: float) -> bool:
    """True when `observed` differs from `expected` by more than tolerance_pct percent of expected."""
    return abs(observed - expected) > abs(expected) * tolerance_pct / 100.0


def detect_clock_drift(
    expected: Mapping[str, int | float], observed: Mapping[str, int | float], tolerance_pct: float
) -> DriftReport:
    """Which expected clock fields (e.g. "sm_mhz", "min_freq_hz") read back outside tolerance."""
    if tolerance_pct < 0:
        raise ValueError(f"tolerance_pct must be >= 0, got {tolerance_pct}")
    drifted = {
        name: (want, observed[name])
        for name, want in expected.items()
        if name in observed and _outside(want, observed[name], tolerance_pct)
    }
    missing = tuple(name for name in expected if name not in observed)
    return DriftReport(drifted=bool(drifted), fields=drifted, missing=missing)


def _describe(drift: DriftReport) -> str:
    """"name expected→observed" for each drifted field."""
    return ", ".join(f"{name} {want}→{got}" for name, (want, got) in drift.fields.items())


def next_action(
    state: ClockTrackState,
    drift: DriftReport,
    now_s: float,
    *,
    max_reapplies: int = DEFAULT_MAX_REAPPLIES,
    window_s: float = DEFAULT_REAPPLY_WINDOW_S,
) -> ClockDecision:
    """"reapply" on drift unless max_reapplies happened within window_s, then "give_up" (once)."""
    recent = tuple(t for t in state.reapply_times_s if now_s - window_s < t <= now_s)
    if not drift.drifted:
        return ClockDecision("none", replace(state, reapply_times_s=recent, gave_up=False), "clocks in lock")
    counted = replace(state, reapply_times_s=recent, drift_count=state.drift_count + 1)
    if len(recent) < max_reapplies:
        updated = replace(counted, reapply_times_s=(*recent, now_s), reapply_count=state.reapply_count + 1)
        return ClockDecision("reapply", updated, f"drift: {_describe(drift)}")
    reason = f"drift: {_describe(drift)}; {len(recent)} re-applies within {window_s:.0f} s"
    if state.gave_up:
        return ClockDecision("none", counted, f"{reason}; already gave up")
    return ClockDecision("give_up", replace(counted, gave_up=True), reason)
