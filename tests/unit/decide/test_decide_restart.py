"""Tests of ishowttsd.decide.restart: worker restart with backoff, or halt."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ishowttsd.decide.restart import RestartDecision, RestartPolicy
from ishowttsd.engine.protocol import EXIT_BOOT_FAILURE

POLICY = RestartPolicy(max_restarts=5, window_s=300.0, base_delay_s=1.0, max_delay_s=30.0)


def test_first_restart_is_immediate() -> None:
    decision = POLICY.decide([], now_s=1000.0, last_exit_code=-9)
    assert decision == RestartDecision("restart", 0.0, "restart 1 of 5 in window")


def test_backoff_doubles_per_recent_restart() -> None:
    delays = [POLICY.decide([1000.0] * k, now_s=1001.0, last_exit_code=1).delay_s for k in range(5)]
    assert delays == [0.0, 1.0, 2.0, 4.0, 8.0]


def test_backoff_is_capped() -> None:
    policy = RestartPolicy(max_restarts=100, window_s=300.0, base_delay_s=1.0, max_delay_s=30.0)
    assert policy.decide([1.0] * 50, now_s=2.0, last_exit_code=1).delay_s == 30.0
    assert policy.delay_for(10_000) == 30.0


def test_too_many_restarts_in_the_window_halt() -> None:
    decision = POLICY.decide([100.0, 150.0, 200.0, 250.0, 299.0], now_s=300.0, last_exit_code=1)
    assert decision.action == "halt" and "5 restarts within 300 s" in decision.reason


def test_restarts_outside_the_window_are_forgotten() -> None:
    decision = POLICY.decide([0.0, 1.0, 2.0, 3.0, 4.0], now_s=304.5, last_exit_code=1)
    assert decision.action == "restart" and decision.delay_s == 0.0


def test_boot_failure_halts_at_once() -> None:
    decision = POLICY.decide([], now_s=0.0, last_exit_code=EXIT_BOOT_FAILURE)
    assert decision.action == "halt" and "failed to boot" in decision.reason


def test_invalid_policy_is_rejected() -> None:
    with pytest.raises(ValueError):
        RestartPolicy(max_restarts=-1, window_s=10.0)
    with pytest.raises(ValueError):
        RestartPolicy(max_restarts=1, window_s=0.0)


@given(
    st.lists(st.floats(min_value=0, max_value=1000), max_size=20),
    st.floats(min_value=0, max_value=1000),
    st.one_of(st.none(), st.integers(-15, 255)),
)
def test_policy_properties(restarts: list[float], now: float, code: int | None) -> None:
    decision = POLICY.decide(restarts, now, code)
    recent = sum(1 for t in restarts if now - 300.0 < t <= now)
    if code == EXIT_BOOT_FAILURE or recent >= 5:
        assert decision.action == "halt" and decision.delay_s == 0.0
    else:
        assert decision.action == "restart"
        assert 0.0 <= decision.delay_s <= 30.0
        assert decision.delay_s == (0.0 if recent == 0 else min(30.0, 2.0 ** (recent - 1)))


@given(st.integers(0, 200))
def test_delay_never_decreases_with_more_restarts(k: int) -> None:
    assert POLICY.delay_for(k) <= POLICY.delay_for(k + 1)
