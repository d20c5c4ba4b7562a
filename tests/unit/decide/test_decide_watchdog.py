"""Tests of ishowttsd.decide.watchdog: when to pet systemd's watchdog, and the STATUS= line."""

from __future__ import annotations

import itertools
from datetime import datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ishowttsd.decide.watchdog import (
    ENGINE_PHASES,
    PetDecision,
    StatusSnapshot,
    render_status_line,
    should_pet,
)

NOW = 10_000.0
LIMITS = {
    "loop_max_age_s": 10.0,
    "worker_max_age_s": 15.0,
    "canary_max_age_s": 300.0,
    "max_failed_recoveries": 3,
}
AGES = {"fresh": 1.0, "stale": 1_000.0, "never": None}


def pet(
    state: str = "ready",
    loop: str = "fresh",
    pong: str = "fresh",
    canary: str = "fresh",
    in_grace: bool = False,
    recoveries: int = 0,
) -> PetDecision:
    def at(age_name: str) -> float | None:
        age = AGES[age_name]
        return None if age is None else NOW - age

    return should_pet(NOW, NOW - (AGES[loop] or 0.0), at(pong), at(canary), state,
                      boot_grace_until_s=NOW + (60.0 if in_grace else -60.0),
                      failed_recoveries=recoveries, **LIMITS)  # fmt: skip


# ---------------------------------------------------------------- table rows

ROWS = [
    # (kwargs, pet, action, words in the reason)
    ({}, True, "none", "healthy"),
    ({"loop": "stale"}, False, "none", "event loop stalled"),
    ({"loop": "stale", "recoveries": 5}, False, "none", "event loop stalled"),
    ({"recoveries": 3}, False, "give_up", "failed recoveries"),
    ({"recoveries": 2, "pong": "stale"}, True, "recycle_worker", "worker silent"),
    ({"state": "failed"}, False, "give_up", "engine failed"),
    ({"state": "starting", "pong": "never", "canary": "never", "in_grace": True}, True, "none", "starting"),
    ({"state": "warming", "pong": "stale", "canary": "never", "in_grace": True}, True, "none", "boot grace"),
    ({"state": "restarting", "in_grace": False}, True, "recycle_worker", "exceeded its grace"),
    ({"state": "recycling", "in_grace": True, "recoveries": 3}, False, "give_up", "failed recoveries"),
    ({"pong": "stale"}, True, "recycle_worker", "worker silent"),
    ({"pong": "never"}, True, "recycle_worker", "last pong never"),
    ({"canary": "stale"}, True, "recycle_worker", "canary stale"),
    ({"canary": "never"}, True, "recycle_worker", "canary stale"),
    ({"canary": "never", "in_grace": True}, True, "none", "first canary pending"),
    ({"canary": "stale", "in_grace": True}, True, "recycle_worker", "canary stale"),
]


@pytest.mark.parametrize(("kwargs", "pets", "action", "words"), ROWS)
def test_rule_table(kwargs: dict[str, Any], pets: bool, action: str, words: str) -> None:
    decision = pet(**kwargs)
    assert (decision.pet, decision.action) == (pets, action)
    assert words in decision.reason


def test_unknown_engine_state_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown engine state"):
        pet(state="sleeping")


def test_ages_are_compared_strictly() -> None:
    exactly = should_pet(100.0, 90.0, 85.0, -200.0, "ready", boot_grace_until_s=0.0, failed_recoveries=0,
                         **LIMITS)  # fmt: skip
    assert exactly == PetDecision(True, "healthy", "none")


# ---------------------------------------------------------------- exhaustive


def expected(
    state: str, loop: str, pong: str, canary: str, in_grace: bool, recoveries: int
) -> tuple[bool, str]:
    """The specification, written as plain if-statements independent of the module's table."""
    if loop != "fresh":
        return False, "none"
    if recoveries >= LIMITS["max_failed_recoveries"] or state == "failed":
        return False, "give_up"
    if state != "ready":
        return True, "none" if in_grace else "recycle_worker"
    if pong != "fresh":
        return True, "recycle_worker"
    if canary == "fresh" or (canary == "never" and in_grace):
        return True, "none"
    return True, "recycle_worker"


COMBINATIONS = list(
    itertools.product(sorted(ENGINE_PHASES), ["fresh", "stale"], AGES, AGES, [True, False], [0, 2, 3, 4])
)


def test_every_combination_matches_the_specification() -> None:
    mismatches: list[tuple[tuple[Any, ...], PetDecision]] = []
    for combo in COMBINATIONS:
        decision = pet(*combo)
        if (decision.pet, decision.action) != expected(*combo) or not decision.reason:
            mismatches.append((combo, decision))
    assert mismatches == []
    assert len(COMBINATIONS) == 6 * 2 * 3 * 3 * 2 * 4


def test_the_grid_covers_every_state_and_outcome() -> None:
    outcomes = {expected(*combo) for combo in COMBINATIONS}
    assert outcomes == {(False, "none"), (False, "give_up"), (True, "none"), (True, "recycle_worker")}
    assert {combo[0] for combo in COMBINATIONS} == set(ENGINE_PHASES)


@given(
    st.sampled_from(sorted(ENGINE_PHASES)),
    st.floats(min_value=0, max_value=100),
    st.one_of(st.none(), st.floats(min_value=0, max_value=100)),
    st.one_of(st.none(), st.floats(min_value=0, max_value=1000)),
    st.floats(min_value=-100, max_value=100),
    st.integers(0, 10),
)
def test_invariants(state: str, loop_age: float, pong_age: float | None, canary_age: float | None,
                    grace: float, recoveries: int) -> None:  # fmt: skip
    decision = should_pet(
        NOW, NOW - loop_age, None if pong_age is None else NOW - pong_age,
        None if canary_age is None else NOW - canary_age, state,
        boot_grace_until_s=NOW + grace, failed_recoveries=recoveries, **LIMITS,
    )  # fmt: skip
    assert decision.pet == (loop_age <= LIMITS["loop_max_age_s"] and decision.action != "give_up")
    assert (decision.action == "give_up") == (
        loop_age <= LIMITS["loop_max_age_s"] and (recoveries >= 3 or state == "failed")
    )
    if decision.action == "recycle_worker":
        assert decision.pet and recoveries < 3


# ---------------------------------------------------------------- status line


def test_full_status_line() -> None:
    snapshot = StatusSnapshot(
        state="serving", req_per_s=2.1, rtf_p95=0.031, gpu_temp_c=61.2, clocks_locked=True,
        next_job="benchmark", next_job_at=datetime(2026, 11, 29, 3, 0), now=datetime(2026, 11, 29, 1, 0),
    )  # fmt: skip
    assert render_status_line(snapshot) == (
        "serving, 2.1 req/s, rtf p95 0.03, gpu 61°C, clocks locked, next job: benchmark 03:00"
    )


@pytest.mark.parametrize(
    ("snapshot", "line"),
    [
        (StatusSnapshot("starting"), "starting, clocks n/a"),
        (StatusSnapshot("warming", clocks_locked=False), "warming, clocks unlocked"),
        (StatusSnapshot("recycling", req_per_s=0.0), "recycling engine, 0.0 req/s, clocks n/a"),
        (StatusSnapshot("degraded", reason="canary stale"), "degraded: canary stale, clocks n/a"),
        (StatusSnapshot("failed", reason="no\ncheckpoint"), "failed: no checkpoint, clocks n/a"),
        (StatusSnapshot("degraded", reason=" \n "), "degraded, clocks n/a"),
        (StatusSnapshot("serving", next_job=" \r"), "serving, clocks n/a"),
        (StatusSnapshot("failed"), "failed, clocks n/a"),
        (StatusSnapshot("serving", reason="ignored when serving"), "serving, clocks n/a"),
        (StatusSnapshot("serving", next_job="backup"), "serving, clocks n/a, next job: backup"),
        (
            StatusSnapshot(
                "serving", next_job="benchmark", next_job_at=datetime(2026, 11, 29, 3, 0),
                now=datetime(2026, 11, 25, 12, 0),
            ),
            "serving, clocks n/a, next job: benchmark Sun 03:00",
        ),
    ],
)
def test_status_line_variants(snapshot: StatusSnapshot, line: str) -> None:
    assert render_status_line(snapshot) == line


@given(
    st.sampled_from(["starting", "warming", "serving", "recycling", "degraded", "failed"]),
    st.text(max_size=40),
    st.one_of(st.none(), st.floats(min_value=0, max_value=1e4)),
    st.one_of(st.none(), st.booleans()),
    st.one_of(st.none(), st.text(max_size=20)),
)
def test_status_line_is_always_one_line(state: str, reason: str, rate: float | None, clocks: bool | None,
                                        job: str | None) -> None:  # fmt: skip
    line = render_status_line(StatusSnapshot(state, reason, rate, None, None, clocks, job))  # type: ignore[arg-type]
    assert "\n" not in line and "\r" not in line
    assert "clocks " in line
    assert line.startswith("recycling engine" if state == "recycling" else state)
