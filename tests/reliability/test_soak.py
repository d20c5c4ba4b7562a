"""Bounded soak at steady load: RSS and open-fd slopes of the daemon and its worker; a leak fails it.

SOAK_SECONDS (default 60) sets the measured span; the 30-minute run is
`SOAK_SECONDS=1800 .venv/bin/python -m pytest tests/reliability/test_soak.py -s` (docs/failure-modes.md).
The limits and why they depend on the span: tests/reliability/soak_measure.py. That the measurement
catches a real leak is test_worker_faults.py::test_the_soak_measurement_catches_a_real_leak.
"""

from __future__ import annotations

import os
import time

import pytest
from reliability_support import FAST, TINY_TEXT, DaemonProcess, LoadResult, run_load
from soak_measure import MIB, RSS_LIMIT_MIB_PER_H, Series, Watch, describe, judge, limits_for

SOAK_S = float(os.environ.get("SOAK_SECONDS", "60"))
WARMUP_S = min(10.0, SOAK_S / 4)


def steady_load(daemon: DaemonProcess, seconds: float) -> LoadResult:
    """Concurrency 2, tiny texts, for `seconds`."""
    merged, deadline = LoadResult(), time.monotonic() + seconds
    while time.monotonic() < deadline:
        merged.outcomes += run_load(daemon.socket, 8, 2, {"text": TINY_TEXT, **FAST}, 60).outcomes
    return merged


@pytest.mark.slow
def test_steady_load_does_not_leak_memory_or_descriptors(plain_daemon: DaemonProcess) -> None:
    with Watch(plain_daemon) as watch:
        result = steady_load(plain_daemon, WARMUP_S + SOAK_S)
    measured = watch.after(WARMUP_S)
    slopes = {name: describe(name, values.slope_per_hour()) for name, values in measured.items()}
    rate = len(result.outcomes) / (WARMUP_S + SOAK_S)
    print(f"\nFIGURE soak: {SOAK_S:.0f}s measured after {WARMUP_S:.0f}s warm-up, {len(result.outcomes)} requests "
          f"({rate:.1f}/s) {result.by_status()}; slopes {slopes}; worker pids {sorted(watch.worker_pids)}")
    assert result.by_status() == {200: len(result.outcomes)}
    assert len(watch.worker_pids) == 1, "the worker was replaced during the soak"
    assert not judge(measured, SOAK_S), judge(measured, SOAK_S)


def test_judge_flags_only_slopes_over_the_limits() -> None:
    flat = Series(list(range(60)), [100 * MIB] * 60)
    spiky = Series(list(range(60)), [100 * MIB + (50 * MIB if i == 30 else 0) for i in range(60)])
    leaking_fds = Series(list(range(60)), [20 + i for i in range(60)])  # one per second
    growing = Series(list(range(60)), [100 * MIB + i * MIB // 10 for i in range(60)])  # 360 MiB/h
    steady = {"daemon rss": flat, "worker rss": spiky, "worker fds": Series(list(range(60)), [9] * 60)}
    assert judge(steady, 60) == [] and judge(steady, 1800) == []
    leaking = {"worker fds": leaking_fds, "daemon rss": growing}
    assert [p.split(" grows")[0] for p in judge(leaking, 1800)] == ["worker fds", "daemon rss"]
    assert [p.split(" grows")[0] for p in judge(leaking, 60)] == ["worker fds"]  # 6 MiB in a minute: noise
    assert limits_for(1800)["rss"] == RSS_LIMIT_MIB_PER_H * MIB and limits_for(60)["rss"] == 480 * MIB
