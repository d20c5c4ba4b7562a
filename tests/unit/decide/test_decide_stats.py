"""Tests of ishowttsd.decide.stats: summaries (R29), rolling windows, event rates."""

from __future__ import annotations

import math
import statistics

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ishowttsd.decide.stats import RollingWindow, Summary, percentile, rate_per_s, summarize

finite = st.floats(min_value=-1e9, max_value=1e9, allow_nan=False, allow_infinity=False)
samples = st.lists(finite, min_size=1, max_size=200)


def _linear_percentile(values: list[float], q: float) -> float:
    """Independent oracle: numpy's "linear" method written out (h = (n - 1) q)."""
    ordered = sorted(values)
    h = (len(ordered) - 1) * q
    lo = math.floor(h)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (h - lo) * (ordered[hi] - ordered[lo])


def test_summary_of_known_sample() -> None:
    s = summarize([1.0, 2.0, 3.0, 4.0, 5.0])
    assert (s.n, s.mean, s.median, s.p50, s.min, s.max) == (5, 3.0, 3.0, 3.0, 1.0, 5.0)
    assert s.p95 == pytest.approx(4.8)
    assert s.p99 == pytest.approx(4.96)
    assert s.std == pytest.approx(math.sqrt(2.5))


def test_summary_of_one_value_is_that_value_with_zero_std() -> None:
    assert summarize([0.25]) == Summary(1, 0.25, 0.25, 0.25, 0.25, 0.25, 0.0, 0.25, 0.25)


@pytest.mark.parametrize("bad", [[], [float("nan")], [1.0, float("inf")]])
def test_summary_rejects_empty_and_non_finite(bad: list[float]) -> None:
    with pytest.raises(ValueError):
        summarize(bad)


def test_summary_as_dict_has_the_benchmark_protocol_fields() -> None:
    d = summarize([0.2, 0.3, 0.4]).as_dict()
    assert {"n", "mean", "median", "p50", "p95", "p99", "std", "min", "max"} == set(d)


@given(samples)
def test_summary_matches_independent_formulas(values: list[float]) -> None:
    s = summarize(values)
    tol = 1e-9 * max(1.0, max(abs(v) for v in values))
    assert s.n == len(values)
    assert s.min == min(values) and s.max == max(values)
    for got, q in ((s.p50, 0.5), (s.p95, 0.95), (s.p99, 0.99)):
        assert got == pytest.approx(_linear_percentile(values, q), abs=tol)
    assert s.median == pytest.approx(s.p50, abs=tol)
    assert s.min - tol <= s.p50 <= s.p95 + tol <= s.p99 + 2 * tol <= s.max + 3 * tol
    assert s.std >= 0.0


@given(samples)
def test_summary_does_not_depend_on_order(values: list[float]) -> None:
    assert summarize(values) == summarize(sorted(values)) == summarize(values[::-1])


@given(st.lists(finite, min_size=2, max_size=50))
def test_std_is_the_sample_std(values: list[float]) -> None:
    assert summarize(values).std == pytest.approx(statistics.stdev(values), rel=1e-9, abs=1e-6)


@given(samples, st.integers(min_value=1, max_value=99))
def test_percentile_is_linear_interpolation(values: list[float], pct: int) -> None:
    tol = 1e-9 * max(1.0, max(abs(v) for v in values))
    assert percentile(values, pct) == pytest.approx(_linear_percentile(values, pct / 100), abs=tol)


@pytest.mark.parametrize("pct", [0, 100, -5])
def test_percentile_rejects_out_of_range(pct: int) -> None:
    with pytest.raises(ValueError):
        percentile([1.0, 2.0], pct)


def test_rolling_window_keeps_only_the_last_values() -> None:
    window = RollingWindow(3)
    assert window.summary() is None and len(window) == 0
    for value in (1.0, 2.0, 3.0, 4.0):
        window.add(value)
    assert window.values() == [2.0, 3.0, 4.0]
    summary = window.summary()
    assert summary is not None and summary.n == 3 and summary.mean == 3.0


@given(st.integers(min_value=1, max_value=20), st.lists(finite, max_size=60))
def test_rolling_window_equals_the_tail(maxlen: int, values: list[float]) -> None:
    window = RollingWindow(maxlen)
    for value in values:
        window.add(value)
    assert window.values() == values[-maxlen:] if values else window.values() == []


def test_rolling_window_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        RollingWindow(0)
    with pytest.raises(ValueError):
        RollingWindow(2).add(float("nan"))


def test_rate_counts_events_in_the_half_open_window() -> None:
    stamps = [0.0, 50.0, 50.5, 59.0, 60.0, 61.0]
    # window (0, 60]: 50, 50.5, 59, 60 → 4 events in 60 s; 0 is out, 61 is in the future
    assert rate_per_s(stamps, now=60.0, window_s=60.0) == pytest.approx(4 / 60)
    assert rate_per_s([], now=10.0, window_s=5.0) == 0.0


@given(st.lists(st.floats(min_value=0, max_value=1000), max_size=50), st.floats(min_value=0.1, max_value=500))
def test_rate_is_bounded_by_the_count(stamps: list[float], window: float) -> None:
    rate = rate_per_s(stamps, now=1000.0, window_s=window)
    assert 0.0 <= rate <= len(stamps) / window


def test_rate_rejects_a_non_positive_window() -> None:
    with pytest.raises(ValueError):
        rate_per_s([1.0], now=1.0, window_s=0.0)
