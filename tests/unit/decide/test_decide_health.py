"""Tests of ishowttsd.decide.health: RTF-breach diagnosis (R22) and the daily report (R6, R8, R9)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ishowttsd.decide.health import Diagnosis, HealthInputs, daily_report, diagnose_rtf_breach

HEALTHY = {
    "clock_state_locked": True,
    "throttle_reasons": [],
    "max_temp_c": 55.0,
    "compile_state": "compiled",
    "utilization_percent": 80.0,
}


def diagnose(rtf_p95: float | None = 0.5, target: float = 0.3, **changes: object) -> Diagnosis:
    return diagnose_rtf_breach(rtf_p95, target, **{**HEALTHY, **changes})  # type: ignore[arg-type]


@pytest.mark.parametrize("rtf", [None, 0.1, 0.3])
def test_no_breach_no_causes_no_actions(rtf: float | None) -> None:
    diagnosis = diagnose(rtf, clock_state_locked=False, compile_state="eager_fallback")
    assert not diagnosis.breach and diagnosis.causes == [] and diagnosis.actions == []


@pytest.mark.parametrize(
    ("changes", "cause", "actions"),
    [
        ({"clock_state_locked": False}, "clocks not locked", ["relock"]),
        ({"throttle_reasons": ["sw_thermal_slowdown"]}, "throttled: sw_thermal_slowdown", ["report_thermal"]),
        ({"max_temp_c": 84.0}, "gpu hot: 84°C", ["report_thermal"]),
        ({"compile_state": "eager_fallback"}, "torch.compile failed", ["report_compile_fallback"]),
        ({"compile_state": "eager"}, "torch.compile disabled", ["recycle"]),
        ({"utilization_percent": 20.0}, "utilisation low (20%)", ["recycle"]),
        ({"utilization_percent": 99.0}, "saturated", ["recycle"]),
        ({}, "no known cause", ["recycle"]),
    ],
)
def test_each_cause_and_its_actions(changes: dict[str, object], cause: str, actions: list[str]) -> None:
    diagnosis = diagnose(**changes)
    assert diagnosis.breach
    assert diagnosis.causes[0] == "rtf p95 0.500 above target 0.300"
    assert any(cause in c for c in diagnosis.causes), diagnosis.causes
    assert diagnosis.actions == actions


def test_several_causes_give_unique_actions_in_order() -> None:
    diagnosis = diagnose(clock_state_locked=False, throttle_reasons=["hw_slowdown", "sw_power_cap"],
                         max_temp_c=90.0, compile_state="eager_fallback")  # fmt: skip
    assert diagnosis.actions == ["relock", "report_thermal", "report_compile_fallback"]
    assert len(diagnosis.causes) == 5


def test_unknown_readings_are_not_causes() -> None:
    diagnosis = diagnose(clock_state_locked=None, max_temp_c=None, utilization_percent=None)
    assert diagnosis.actions == ["recycle"] and len(diagnosis.causes) == 2


def test_hot_threshold_is_configurable() -> None:
    assert diagnose(max_temp_c=70.0, hot_c=65.0).actions == ["report_thermal"]


@given(
    st.one_of(st.none(), st.floats(min_value=0, max_value=5)),
    st.one_of(st.none(), st.booleans()),
    st.lists(st.sampled_from(["hw_slowdown", "sw_power_cap", "hw_thermal_slowdown"]), max_size=3),
    st.one_of(st.none(), st.floats(min_value=20, max_value=110)),
    st.sampled_from(["compiled", "eager", "eager_fallback"]),
    st.one_of(st.none(), st.floats(min_value=0, max_value=100)),
)
def test_diagnosis_invariants(
    rtf: float | None, locked: bool | None, throttles: list[str], temp: float | None, compile_state: str,
    util: float | None,
) -> None:
    d = diagnose_rtf_breach(rtf, 0.3, locked, throttles, temp, compile_state, util)
    assert d.breach == (rtf is not None and rtf > 0.3)
    assert len(d.actions) == len(set(d.actions))
    if not d.breach:
        assert d.causes == [] and d.actions == []
        return
    assert d.actions, "a breach always gets an action"
    assert ("relock" in d.actions) == (locked is False)
    assert ("report_compile_fallback" in d.actions) == (compile_state == "eager_fallback")
    assert ("report_thermal" in d.actions) == (bool(throttles) or (temp is not None and temp >= 80.0))


def test_daily_report_all_good() -> None:
    report = daily_report(HealthInputs(rtf_p95=0.2, rtf_target=0.3, clock_state_locked=True,
                                       compile_state="compiled", requests_total=1000))  # fmt: skip
    assert report["ok"] and report["problems"] == []
    assert report["rtf"] == {"p95": 0.2, "target": 0.3, "breach": False}
    assert report["failures"] == {"total": 0, "rate": 0.0, "by_cause": {}}


def test_daily_report_collects_problems_without_duplicates() -> None:
    inputs = HealthInputs(
        rtf_p95=0.5, rtf_target=0.3, clock_state_locked=False, clock_drift_count=4,
        compile_state="eager_fallback", compile_error="graph break", rss_bytes=3 << 30,
        requests_total=200, failures_by_cause={"engine": 3, "timeout": 1, "bad_input": 0},
        throttle_reasons=["sw_power_cap"], max_temp_c=70.0, utilization_percent=85.0,
    )  # fmt: skip
    report = daily_report(inputs)
    assert not report["ok"]
    problems = report["problems"]
    assert len(problems) == len(set(problems))
    assert "gpu clocks not locked" in problems
    assert "3 failed requests (engine)" in problems and "1 failed requests (timeout)" in problems
    assert not any("bad_input" in p for p in problems)
    assert any("graph break" in p for p in problems)
    assert report["failures"]["rate"] == pytest.approx(4 / 200)
    assert report["diagnosis"]["actions"] == ["relock", "report_thermal", "report_compile_fallback"]
    assert report["clocks"] == {"locked": False, "drift_count": 4}
    assert report["memory"]["rss_bytes"] == 3 << 30


def test_daily_report_reports_throttling_even_without_breach() -> None:
    report = daily_report(HealthInputs(rtf_p95=None, rtf_target=0.3, clock_state_locked=None,
                                       throttle_reasons=["hw_slowdown"]))  # fmt: skip
    assert report["problems"] == ["gpu throttled: hw_slowdown"]
    assert report["failures"]["rate"] is None


@given(
    st.dictionaries(st.sampled_from(["engine", "timeout", "queue_full"]), st.integers(0, 100)),
    st.integers(0, 10_000),
    st.one_of(st.none(), st.floats(min_value=0, max_value=2)),
)
def test_daily_report_is_json_and_ok_means_no_problems(
    failures: dict[str, int], total: int, rtf: float | None
) -> None:
    report = daily_report(HealthInputs(rtf_p95=rtf, rtf_target=0.3, clock_state_locked=True,
                                       compile_state="compiled", requests_total=total,
                                       failures_by_cause=failures))  # fmt: skip
    assert json.loads(json.dumps(report)) == report
    assert report["ok"] == (not report["problems"])
    assert report["ok"] == (not any(failures.values()) and (rtf is None or rtf <= 0.3))
