"""Tests of ishowttsd.decide.boot_yield: a boot beside a serving worker yields, within bounds."""

from __future__ import annotations

import pytest

from ishowttsd.decide.boot_yield import BootYield

RULE = BootYield(max_pause_s=5.0, min_run_s=1.0)


@pytest.mark.parametrize(("busy", "paused_for", "since_forced", "pause"), [
    (False, None, None, False),  # the serving worker is idle: boot on
    (False, 2.0, None, False),  # idle again: resume
    (True, None, None, True),  # busy: pause at once
    (True, 4.9, None, True),  # busy, paused less than max_pause_s: stay paused
    (True, 5.0, None, False),  # paused max_pause_s: resume whatever the load
    (True, None, 0.5, False),  # resumed by the bound: run min_run_s first
    (True, None, 1.0, True),  # ... and then yield again
])
def test_should_pause(busy: bool, paused_for: float | None, since_forced: float | None, pause: bool) -> None:
    assert RULE.should_pause(busy, paused_for, since_forced) is pause


def test_zero_max_pause_never_pauses() -> None:
    assert not BootYield(max_pause_s=0.0).should_pause(True, None, None)


def test_a_steady_load_still_lets_the_boot_run_its_share() -> None:
    """Simulated 0.1 s ticks under constant load: the boot runs min_run / (max_pause + min_run) of the time."""
    paused_for: float | None = None
    since_forced: float | None = None
    ran = 0.0
    for _ in range(600):
        if RULE.should_pause(True, paused_for, since_forced):
            paused_for = (paused_for or 0.0) + 0.1
        else:
            since_forced = 0.0 if paused_for is not None else (since_forced or 0.0) + 0.1
            paused_for, ran = None, ran + 0.1
    assert 9.0 <= ran <= 11.0, ran  # 60 s at 1/6
