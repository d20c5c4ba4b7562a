"""Tests of ishowttsd.decide.drift: clock drift detection and the bounded re-apply policy (R5)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ishowttsd.decide.drift import ClockTrackState, DriftReport, detect_clock_drift, next_action

LOCK = {"min_freq_hz": 1_300_500_000, "max_freq_hz": 1_300_500_000}
DRIFT = DriftReport(True, {"min_freq_hz": (1_300_500_000, 306_000_000)})
IN_LOCK = DriftReport(False)


def test_readings_within_tolerance_are_in_lock() -> None:
    observed = {"min_freq_hz": 1_299_000_000, "max_freq_hz": 1_300_500_000}
    assert detect_clock_drift(LOCK, observed, tolerance_pct=1.0) == DriftReport(False, {}, ())


def test_a_dropped_minimum_frequency_is_drift() -> None:
    observed = {"min_freq_hz": 306_000_000, "max_freq_hz": 1_300_500_000}
    report = detect_clock_drift(LOCK, observed, tolerance_pct=1.0)
    assert report.drifted and report.fields == {"min_freq_hz": (1_300_500_000, 306_000_000)}


def test_unreadable_fields_are_missing_not_drifted() -> None:
    report = detect_clock_drift(LOCK, {"max_freq_hz": 1_300_500_000}, tolerance_pct=1.0)
    assert not report.drifted and report.missing == ("min_freq_hz",)


def test_extra_observed_fields_are_ignored() -> None:
    assert not detect_clock_drift({"sm_mhz": 1980}, {"sm_mhz": 1980, "mem_mhz": 1}, 0.0).drifted


def test_negative_tolerance_is_rejected() -> None:
    with pytest.raises(ValueError):
        detect_clock_drift(LOCK, LOCK, tolerance_pct=-1.0)


@given(
    st.dictionaries(st.sampled_from(["sm_mhz", "mem_mhz", "min_freq_hz"]), st.integers(0, 3_000_000_000)),
    st.floats(min_value=0.0, max_value=50.0),
)
def test_expected_values_never_drift_from_themselves(expected: dict[str, int], tol: float) -> None:
    assert detect_clock_drift(expected, expected, tol) == DriftReport(False, {}, ())


@given(st.integers(1, 3_000_000), st.integers(0, 3_000_000), st.floats(min_value=0.0, max_value=50.0))
def test_drift_is_decided_by_the_relative_difference(want: int, got: int, tol: float) -> None:
    relative_pct = abs(got - want) / want * 100
    report = detect_clock_drift({"sm_mhz": want}, {"sm_mhz": got}, tol)
    if relative_pct > tol * 1.000001:
        assert report.drifted and report.fields == {"sm_mhz": (want, got)}
    elif relative_pct < tol * 0.999999 or got == want:
        assert not report.drifted and report.fields == {}


@pytest.mark.parametrize(
    ("got", "drifted"), [(2000, False), (1980, False), (1979, True), (2020, False), (2021, True)]
)
def test_tolerance_boundary_is_inclusive(got: int, drifted: bool) -> None:
    # 1 % of 2000 MHz = 20 MHz: a difference of exactly 20 is still in lock
    assert detect_clock_drift({"sm_mhz": 2000}, {"sm_mhz": got}, 1.0).drifted is drifted


def test_drift_is_reapplied_and_counted() -> None:
    decision = next_action(ClockTrackState(), DRIFT, now_s=100.0)
    assert decision.action == "reapply" and "min_freq_hz" in decision.reason
    assert decision.state == ClockTrackState((100.0,), drift_count=1, reapply_count=1, gave_up=False)


def test_in_lock_means_nothing_to_do() -> None:
    decision = next_action(ClockTrackState(), IN_LOCK, now_s=5.0)
    assert decision.action == "none" and decision.state == ClockTrackState()


def test_gives_up_after_max_reapplies_within_the_window_then_stays_quiet() -> None:
    state, actions = ClockTrackState(), []
    for t in range(5):
        decision = next_action(state, DRIFT, now_s=float(t * 60), max_reapplies=3, window_s=3600.0)
        state, actions = decision.state, [*actions, decision.action]
    assert actions == ["reapply", "reapply", "reapply", "give_up", "none"]
    assert state.gave_up and state.drift_count == 5 and state.reapply_count == 3


def test_reapplies_outside_the_window_are_forgotten() -> None:
    state = ClockTrackState(reapply_times_s=(0.0, 10.0, 20.0), reapply_count=3)
    decision = next_action(state, DRIFT, now_s=3700.0, max_reapplies=3, window_s=3600.0)
    assert decision.action == "reapply" and decision.state.reapply_times_s == (3700.0,)


def test_back_in_lock_clears_give_up_but_keeps_the_window() -> None:
    gave_up = ClockTrackState(reapply_times_s=(0.0, 1.0, 2.0), drift_count=4, reapply_count=3, gave_up=True)
    calm = next_action(gave_up, IN_LOCK, now_s=10.0, max_reapplies=3)
    assert calm.action == "none" and not calm.state.gave_up and calm.state.reapply_times_s == (0.0, 1.0, 2.0)
    # drifting again soon: the recent re-applies still count, so it gives up again instead of fighting
    assert next_action(calm.state, DRIFT, now_s=20.0, max_reapplies=3).action == "give_up"


@given(st.lists(st.tuples(st.booleans(), st.floats(min_value=0.0, max_value=600.0)), max_size=60))
def test_never_more_than_max_reapplies_in_any_window(steps: list[tuple[bool, float]]) -> None:
    state, now, reapplies = ClockTrackState(), 0.0, list[float]()
    for drifted, gap in steps:
        now += gap
        decision = next_action(state, DRIFT if drifted else IN_LOCK, now, max_reapplies=3, window_s=3600.0)
        state = decision.state
        assert decision.action == "none" or drifted
        if decision.action == "reapply":
            reapplies.append(now)
    for t in reapplies:
        assert sum(1 for u in reapplies if t - 3600.0 < u <= t) <= 3
    assert state.reapply_count == len(reapplies)
    assert state.drift_count == sum(1 for d, _ in steps if d)
