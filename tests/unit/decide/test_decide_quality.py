"""Tests of ishowttsd.decide.quality: log-mel distance and the verdict (R21, R23)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from ishowttsd.decide.quality import compare_quality, log_mel_distance


def test_identical_mels_have_zero_distance() -> None:
    mel = np.random.default_rng(0).normal(size=(100, 50))
    assert log_mel_distance(mel, mel) == 0.0


def test_constant_offset_is_the_distance() -> None:
    mel = np.zeros((100, 40))
    assert log_mel_distance(mel, mel + 0.75) == pytest.approx(0.75)


def test_lengths_are_aligned_to_the_shorter() -> None:
    a = np.zeros((100, 40))
    b = np.concatenate([np.zeros((100, 30)), np.full((100, 10), 5.0)], axis=1)
    assert log_mel_distance(a, b[:, :30]) == 0.0
    assert log_mel_distance(a[:, :30], b) == 0.0
    assert log_mel_distance(a, b) == pytest.approx(5.0 * 10 / 40)


def test_time_axis_zero_reads_f5_tts_layout() -> None:
    a, b = np.zeros((50, 100)), np.ones((45, 100))
    assert log_mel_distance(a, b, time_axis=0) == pytest.approx(1.0)


def test_linear_mels_are_logged_with_the_floor() -> None:
    a, b = np.full((4, 5), math.e), np.ones((4, 5))
    assert log_mel_distance(a, b, is_log=False) == pytest.approx(1.0)
    assert log_mel_distance(np.zeros((2, 2)), np.full((2, 2), 1e-5), is_log=False) == pytest.approx(0.0)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (np.zeros((100,)), np.zeros((100,))),
        (np.zeros((0, 5)), np.zeros((0, 5))),
        (np.zeros((100, 5)), np.zeros((80, 5))),
        (np.full((2, 2), np.nan), np.zeros((2, 2))),
    ],
)
def test_bad_mels_are_rejected(a: np.ndarray, b: np.ndarray) -> None:
    with pytest.raises(ValueError):
        log_mel_distance(a, b)


mels = arrays(np.float64, st.tuples(st.just(8), st.integers(1, 30)), elements=st.floats(-12, 5))


@given(mels, mels)
def test_distance_is_a_symmetric_non_negative_mean(a: np.ndarray, b: np.ndarray) -> None:
    d = log_mel_distance(a, b)
    assert d >= 0.0 and d == pytest.approx(log_mel_distance(b, a))
    n = min(a.shape[1], b.shape[1])
    assert d <= float(np.max(np.abs(a[:, :n] - b[:, :n]))) + 1e-12


def test_verdict_within_and_above() -> None:
    ok = compare_quality(0.9, 1.5)
    assert ok.ok and ok.margin == pytest.approx(0.6) and "within" in ok.message
    bad = compare_quality(2.0, 1.5)
    assert not bad.ok and bad.margin == pytest.approx(-0.5) and "above" in bad.message
    assert compare_quality(1.5, 1.5).ok


@pytest.mark.parametrize("distance", [math.nan, math.inf])
def test_non_finite_distance_is_flagged(distance: float) -> None:
    assert not compare_quality(distance, 1.5).ok


@given(st.floats(min_value=0, max_value=100), st.floats(min_value=0, max_value=100))
def test_verdict_is_the_comparison(distance: float, threshold: float) -> None:
    assert compare_quality(distance, threshold).ok == (distance <= threshold)
