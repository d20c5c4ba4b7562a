"""Tests of ishowttsd.decide.leak: Theil–Sen trend and the recycle decision (R19, R25)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ishowttsd.decide.leak import (
    MAX_THEIL_SEN_POINTS,
    MemorySample,
    decide_recycle,
    theil_sen_slope,
)

MIB = 1024 * 1024
GIB = 1024 * MIB
STEP_S = 30.0  # sampler interval
BASE_RSS = 2 * GIB

DEFAULTS = {
    "window": 120,
    "slope_threshold_bytes_per_hour": 64 * MIB,
    "rss_ceiling_bytes": 0,
    "gpu_ceiling_bytes": 0,
    "min_samples": 20,
}


def series(
    n: int, rss_per_hour: float = 0.0, gpu_per_hour: float = 0.0, start_s: float = 1_000_000.0
) -> list[MemorySample]:
    """n samples every 30 s growing linearly at the given rates (bytes per hour)."""
    return [
        MemorySample(
            timestamp_s=start_s + i * STEP_S,
            rss_bytes=int(BASE_RSS + rss_per_hour * i * STEP_S / 3600),
            gpu_allocated_bytes=GIB,
            gpu_reserved_bytes=int(2 * GIB + gpu_per_hour * i * STEP_S / 3600),
        )
        for i in range(n)
    ]


def spiked(samples: list[MemorySample], index: int, factor: float = 10.0) -> list[MemorySample]:
    out = list(samples)
    s = out[index]
    out[index] = MemorySample(s.timestamp_s, int(s.rss_bytes * factor), s.gpu_allocated_bytes,
                              int(s.gpu_reserved_bytes * factor))  # fmt: skip
    return out


def decide(history: list[MemorySample], **overrides: float) -> object:
    now = history[-1].timestamp_s if history else 0.0
    return decide_recycle(history, **{**DEFAULTS, "now_s": now, **overrides})  # type: ignore[arg-type]


# ---------------------------------------------------------------- Theil–Sen


@given(
    st.floats(min_value=-1e6, max_value=1e6),
    st.floats(min_value=-1e9, max_value=1e9),
    st.integers(min_value=2, max_value=80),
)
def test_theil_sen_recovers_an_exact_line(slope: float, intercept: float, n: int) -> None:
    xs = [float(i) * 7.5 for i in range(n)]
    ys = [intercept + slope * x for x in xs]
    assert theil_sen_slope(xs, ys) == pytest.approx(slope, rel=1e-6, abs=1e-3)


@given(
    st.floats(min_value=-1e4, max_value=1e4),
    st.integers(min_value=5, max_value=60),
    st.data(),
)
def test_theil_sen_ignores_one_outlier(slope: float, n: int, data: st.DataObject) -> None:
    xs = [float(i) for i in range(n)]
    ys = [slope * x for x in xs]
    ys[data.draw(st.integers(0, n - 1))] += data.draw(st.floats(min_value=-1e12, max_value=1e12))
    assert theil_sen_slope(xs, ys) == pytest.approx(slope, rel=1e-6, abs=1e-6)


def test_theil_sen_thins_long_series_deterministically() -> None:
    n = MAX_THEIL_SEN_POINTS * 3
    xs = [float(i) for i in range(n)]
    ys = [3.0 * x + (1e9 if i % 97 == 0 else 0.0) for i, x in enumerate(xs)]
    first = theil_sen_slope(xs, ys)
    assert first == theil_sen_slope(xs, ys) == pytest.approx(3.0)


def test_theil_sen_skips_pairs_with_equal_x() -> None:
    assert theil_sen_slope([0.0, 0.0, 1.0, 2.0], [5.0, 9.0, 7.0, 9.0]) == pytest.approx(2.0)


@pytest.mark.parametrize(("xs", "ys"), [([1.0, 2.0], [1.0]), ([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]), ([], [])])
def test_theil_sen_rejects_unusable_input(xs: list[float], ys: list[float]) -> None:
    with pytest.raises(ValueError):
        theil_sen_slope(xs, ys)


# ---------------------------------------------------------------- decide_recycle


def test_steady_100_mib_per_hour_triggers() -> None:
    decision = decide(series(120, rss_per_hour=100 * MIB))
    assert decision.recycle and decision.metric == "rss_bytes"
    assert decision.slope_bytes_per_hour == pytest.approx(100 * MIB, rel=0.01)
    assert decision.value == series(120, rss_per_hour=100 * MIB)[-1].rss_bytes


def test_flat_memory_does_not_trigger_and_says_so() -> None:
    decision = decide(series(120))
    assert not decision.recycle and decision.reason.startswith("no leak")
    assert decision.slope_bytes_per_hour == pytest.approx(0.0)


@pytest.mark.parametrize("index", [0, 1, 60, 118, 119])
def test_a_single_10x_spike_does_not_trigger(index: int) -> None:
    history = spiked(series(120), index)
    decision = decide(history, rss_ceiling_bytes=4 * GIB, gpu_ceiling_bytes=8 * GIB)
    assert not decision.recycle, decision.reason


def test_a_single_spike_does_not_hide_a_real_leak() -> None:
    assert decide(spiked(series(120, rss_per_hour=100 * MIB), 119, factor=0.1)).recycle


def test_gpu_reserved_growth_triggers_on_its_own_metric() -> None:
    decision = decide(series(120, gpu_per_hour=200 * MIB))
    assert decision.recycle and decision.metric == "gpu_reserved_bytes"


def test_too_few_samples_refuses_to_decide() -> None:
    decision = decide(series(10, rss_per_hour=10 * GIB))
    assert not decision.recycle and "too few samples" in decision.reason and decision.metric == ""


def test_too_short_a_span_refuses_to_decide() -> None:
    decision = decide(series(30, rss_per_hour=10 * GIB), min_span_s=3600.0)
    assert not decision.recycle and "time span too short" in decision.reason


def test_only_samples_after_the_last_recycle_count() -> None:
    old_worker = series(60)
    recycled_at = old_worker[-1].timestamp_s
    # the new worker settles 1 GiB higher (e.g. compiled kernels) and then stays flat
    new_worker = [MemorySample(s.timestamp_s, s.rss_bytes + GIB, s.gpu_allocated_bytes, s.gpu_reserved_bytes)
                  for s in series(60, start_s=recycled_at + STEP_S)]  # fmt: skip
    assert decide(old_worker + new_worker).recycle  # the step reads as growth across the recycle
    after = decide(old_worker + new_worker, since_s=recycled_at)
    assert not after.recycle and after.reason.startswith("no leak")


def test_only_the_last_window_samples_count() -> None:
    old_leak = series(120, rss_per_hour=500 * MIB)
    flat = series(120, start_s=old_leak[-1].timestamp_s + STEP_S)
    flat = [MemorySample(s.timestamp_s, old_leak[-1].rss_bytes, s.gpu_allocated_bytes, s.gpu_reserved_bytes)
            for s in flat]  # fmt: skip
    assert not decide(old_leak + flat).recycle
    assert decide(old_leak + flat, window=240).recycle


def test_samples_after_now_are_ignored() -> None:
    history = series(120, rss_per_hour=100 * MIB)
    decision = decide(history, now_s=history[9].timestamp_s)
    assert "too few samples" in decision.reason


def test_unsorted_history_is_sorted_by_time() -> None:
    history = series(120, rss_per_hour=100 * MIB)
    assert decide(history[::-1], now_s=history[-1].timestamp_s).recycle


@pytest.mark.parametrize(
    ("ceiling_key", "metric"),
    [("rss_ceiling_bytes", "rss_bytes"), ("gpu_ceiling_bytes", "gpu_allocated_bytes")],
)
def test_recent_median_above_a_ceiling_triggers_with_few_samples(ceiling_key: str, metric: str) -> None:
    history = series(5)
    decision = decide(history, **{ceiling_key: GIB // 2})
    assert decision.recycle and decision.metric == metric and "ceiling" in decision.reason
    assert decision.value == getattr(history[-1], metric)


def test_ceiling_zero_is_off() -> None:
    assert not decide(series(120), rss_ceiling_bytes=0, gpu_ceiling_bytes=0).recycle


def test_gpu_ceiling_applies_to_reserved_memory() -> None:
    decision = decide(series(120), gpu_ceiling_bytes=int(1.5 * GIB))
    assert decision.recycle and decision.metric == "gpu_reserved_bytes"


def test_bad_window_is_rejected() -> None:
    with pytest.raises(ValueError):
        decide(series(10), window=1)


def test_from_mapping_reads_a_history_line() -> None:
    record = {"timestamp_s": 12.5, "rss_bytes": 100, "gpu_reserved_bytes": 7}
    assert MemorySample.from_mapping(record) == MemorySample(12.5, 100, 0, 7)


def noise(mib: int) -> st.SearchStrategy[list[int]]:
    """120 jitters within ±mib MiB.

    Bound: > half of the pairs are at least a quarter of the window (~15 min) apart even after
    dropping the 119 pairs of a spike, so jitter moves the median slope by at most 2·mib / 0.25 h.
    """
    return st.lists(st.integers(min_value=-mib * MIB, max_value=mib * MIB), min_size=120, max_size=120)


def jittered(samples: list[MemorySample], jitter: list[int]) -> list[MemorySample]:
    return [MemorySample(s.timestamp_s, s.rss_bytes + j, s.gpu_allocated_bytes, s.gpu_reserved_bytes)
            for s, j in zip(samples, jitter, strict=True)]  # fmt: skip


@given(noise(5), st.integers(0, 119), st.floats(min_value=0.0, max_value=50.0))
def test_flat_noisy_memory_with_one_spike_never_triggers(jitter: list[int], index: int, k: float) -> None:
    # jitter ±5 MiB moves the slope by at most ~41 MiB/h < 64
    assert not decide(spiked(jittered(series(120), jitter), index, k)).recycle


@given(noise(20), st.integers(0, 119), st.floats(min_value=300.0, max_value=5000.0))
def test_steady_growth_with_noise_and_a_spike_triggers(jitter: list[int], index: int, rate: float) -> None:
    # jitter ±20 MiB moves the slope by at most ~162 MiB/h: 300 - 162 > 64
    decision = decide(spiked(jittered(series(120, rss_per_hour=rate * MIB), jitter), index))
    assert decision.recycle and decision.metric == "rss_bytes"
