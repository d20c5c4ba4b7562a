"""Tests of ishowttsd.decide.regression: benchmark vs target and vs history (R10, R12)."""

from __future__ import annotations

import dataclasses
import statistics

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ishowttsd.decide.regression import BenchResult, check_benchmark, comparison_key


def run(rtf: float = 0.25, **changes: object) -> BenchResult:
    base = BenchResult(model="F5TTS_v1_Base", device="cuda:0", nfe=8, compiled=True, rtf_mean=rtf,
                       rtf_p95=rtf * 1.2, latency_p95_s=rtf * 10, throughput=1.0 / rtf)  # fmt: skip
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


HISTORY = [run(0.25), run(0.26), run(0.24), run(0.25), run(0.25)]


def test_a_run_like_its_history_and_under_target_is_fine() -> None:
    report = check_benchmark(run(0.255), HISTORY, target_rtf=0.3)
    assert not report.regressed and not report.against_target and not report.against_history
    assert report.baseline == pytest.approx(0.25)
    assert report.ratio == pytest.approx(0.255 / 0.25)
    assert report.messages == []


def test_above_target_is_a_regression_against_target_only() -> None:
    history = [run(0.4)] * 5
    report = check_benchmark(run(0.41), history, target_rtf=0.3)
    assert report.regressed and report.against_target and not report.against_history
    assert any("above target" in m for m in report.messages)


def test_slower_than_history_beyond_tolerance_is_a_regression() -> None:
    report = check_benchmark(run(0.29), HISTORY, target_rtf=0.3)
    assert report.regressed and report.against_history and not report.against_target
    assert any(m.startswith("rtf_mean") for m in report.messages)


def test_within_tolerance_is_not_a_regression() -> None:
    assert not check_benchmark(run(0.285), HISTORY, target_rtf=0.3, tolerance=0.15).against_history


def test_lower_throughput_alone_is_a_regression() -> None:
    current = run(0.25, throughput=2.0)  # history: 4 utterances/s
    report = check_benchmark(current, HISTORY, target_rtf=0.3)
    assert report.against_history and any(m.startswith("throughput") for m in report.messages)


def test_zero_throughput_is_a_regression() -> None:
    assert check_benchmark(run(0.25, throughput=0.0), HISTORY, target_rtf=0.3).against_history


def test_only_comparable_runs_form_the_baseline() -> None:
    eager = [run(0.9, compiled=False)] * 5
    other_nfe = [run(0.6, nfe=16)] * 5
    report = check_benchmark(run(0.25), HISTORY + eager + other_nfe, target_rtf=0.3)
    assert report.baseline == pytest.approx(0.25) and not report.regressed


def test_too_little_history_is_not_judged_but_said() -> None:
    report = check_benchmark(run(0.5), [run(0.1)], target_rtf=1.0)
    assert not report.regressed and report.baseline == pytest.approx(0.1)
    assert any("history not judged" in m for m in report.messages)


def test_no_history_has_no_baseline() -> None:
    report = check_benchmark(run(0.2), [], target_rtf=0.3)
    assert report.baseline is None and report.ratio is None and not report.regressed


def test_baseline_is_the_median_of_the_last_k_runs() -> None:
    history = [run(5.0)] * 10 + [run(0.1), run(0.2), run(0.3)]
    report = check_benchmark(run(0.2), history, target_rtf=10.0, baseline_runs=3)
    assert report.baseline == pytest.approx(0.2) and not report.against_history


def test_dicts_from_json_lines_work_like_dataclasses() -> None:
    as_dicts = [dataclasses.asdict(r) for r in HISTORY]
    current = dataclasses.asdict(run(0.4))
    assert check_benchmark(current, as_dicts, target_rtf=0.3) == check_benchmark(run(0.4), HISTORY, 0.3)


def test_missing_optional_metrics_are_skipped() -> None:
    current = {"model": "m", "device": "cpu", "nfe": 8, "compiled": False, "rtf_mean": 0.2}
    history = [{**current, "rtf_mean": 0.2, "throughput": 5.0}] * 3
    assert not check_benchmark(current, history, target_rtf=0.3).regressed


def test_comparison_key() -> None:
    assert comparison_key(run()) == ("F5TTS_v1_Base", "cuda:0", 8, True)
    from_json = {"model": "tiny", "device": "cpu", "nfe": "16", "compiled": 0}
    assert comparison_key(from_json) == ("tiny", "cpu", 16, False)


rtfs = st.floats(min_value=0.01, max_value=5.0)


def rtf_only(rtf: float) -> dict[str, object]:
    return {"model": "m", "device": "cpu", "nfe": 8, "compiled": False, "rtf_mean": rtf}


@given(st.lists(rtfs, min_size=3, max_size=20), rtfs, st.floats(min_value=0.0, max_value=1.0))
def test_regressed_is_exactly_target_or_history(history_rtfs: list[float], rtf: float, tol: float) -> None:
    history = [rtf_only(r) for r in history_rtfs]
    report = check_benchmark(rtf_only(rtf), history, target_rtf=0.3, tolerance=tol)
    assert report.regressed == (report.against_target or report.against_history)
    assert report.against_target == (rtf > 0.3)
    assert report.baseline is not None and report.ratio == pytest.approx(rtf / report.baseline)
    assert report.against_history == (report.ratio > 1 + tol)


@given(st.lists(rtfs, min_size=3, max_size=20), st.floats(min_value=0.0, max_value=1.0))
def test_the_baseline_itself_never_regresses_against_history(history_rtfs: list[float], tol: float) -> None:
    history = [run(r) for r in history_rtfs]
    medians = {
        field: statistics.median(getattr(r, field) for r in history[-5:])
        for field in ("rtf_mean", "rtf_p95", "latency_p95_s", "throughput")
    }
    current = dataclasses.replace(history[0], **medians)
    assert not check_benchmark(current, history, target_rtf=10.0, tolerance=tol).against_history
