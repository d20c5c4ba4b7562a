"""Health decisions (R6, R8, R9, R22): diagnose an RTF breach, build the daily health report.

Pure over their inputs; the health job gathers the readings and acts on the returned actions.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

HealthAction = Literal["relock", "recycle", "report_thermal", "report_compile_fallback"]
CompileState = Literal["compiled", "eager", "eager_fallback"]

# The guide's incident response: "Should be: <80°C", "Should be: 70-90% during synthesis".
DEFAULT_HOT_C = 80.0
LOW_UTILIZATION_PCT = 50.0
SATURATED_UTILIZATION_PCT = 95.0


@dataclass(frozen=True, slots=True)
class Diagnosis:
    """Whether the RTF p95 breaches the target, the likely causes and what to do (no duplicates)."""

    breach: bool
    causes: list[str] = field(default_factory=list)
    actions: list[HealthAction] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class BreachFacts:
    """The readings a diagnosis is made of."""

    clock_state_locked: bool | None
    throttle_reasons: Sequence[str]
    max_temp_c: float | None
    compile_state: str
    utilization_percent: float | None
    hot_c: float = DEFAULT_HOT_C


def _hot(f: BreachFacts) -> bool:
    return f.max_temp_c is not None and f.max_temp_c >= f.hot_c


def _low_use(f: BreachFacts) -> bool:
    return f.utilization_percent is not None and f.utilization_percent < LOW_UTILIZATION_PCT


def _saturated(f: BreachFacts) -> bool:
    return f.utilization_percent is not None and f.utilization_percent >= SATURATED_UTILIZATION_PCT


# (cause applies?, cause text, actions) — every applying row contributes.
CauseRow = tuple[Callable[[BreachFacts], bool], Callable[[BreachFacts], str], tuple[HealthAction, ...]]
_CAUSES: tuple[CauseRow, ...] = (
    (lambda f: f.clock_state_locked is False,
     lambda f: "gpu clocks not locked", ("relock",)),
    (lambda f: bool(f.throttle_reasons),
     lambda f: "gpu throttled: " + ", ".join(f.throttle_reasons), ("report_thermal",)),
    (_hot,
     lambda f: f"gpu hot: {f.max_temp_c:.0f}°C (>= {f.hot_c:.0f}°C)", ("report_thermal",)),
    (lambda f: f.compile_state == "eager_fallback",
     lambda f: "torch.compile failed: running eager", ("report_compile_fallback",)),
    (lambda f: f.compile_state == "eager",
     lambda f: "torch.compile disabled: running eager", ()),
    (_low_use,
     lambda f: f"gpu utilisation low ({f.utilization_percent:.0f}%): host-side bottleneck", ()),
    (_saturated,
     lambda f: f"gpu saturated ({f.utilization_percent:.0f}%): load above capacity", ()),
)  # fmt: skip

_UNEXPLAINED = "no known cause: recycling the engine (leak, fragmentation, stuck state)"


def _unique(actions: Sequence[HealthAction]) -> list[HealthAction]:
    """Actions in first-seen order without duplicates."""
    return list(dict.fromkeys(actions))


def diagnose_rtf_breach(
    rtf_p95: float | None,
    target: float,
    clock_state_locked: bool | None,
    throttle_reasons: Sequence[str],
    max_temp_c: float | None,
    compile_state: str,
    utilization_percent: float | None,
    *,
    hot_c: float = DEFAULT_HOT_C,
) -> Diagnosis:
    """The runbook's high-RTF checklist (R22): lock, throttling/thermal, compile state, utilisation.

    No breach (or no RTF data) → no causes, no actions. A breach no row explains → "recycle".
    A failed compile is reported, not recycled: recompiling would most likely fail the same way.
    """
    if rtf_p95 is None or rtf_p95 <= target:
        return Diagnosis(breach=False)
    facts = BreachFacts(clock_state_locked, tuple(throttle_reasons), max_temp_c, compile_state,
                        utilization_percent, hot_c)  # fmt: skip
    rows = [(text(facts), acts) for applies, text, acts in _CAUSES if applies(facts)]
    if not any(acts for _, acts in rows):
        rows.append((_UNEXPLAINED, ("recycle",)))
    causes = [f"rtf p95 {rtf_p95:.3f} above target {target:.3f}"] + [cause for cause, _ in rows]
    return Diagnosis(True, causes, _unique([a for _, acts in rows for a in acts]))


@dataclass(frozen=True, slots=True)
class HealthInputs:
    """Everything the daily health report summarises (gathered by the health job)."""

    rtf_p95: float | None
    rtf_target: float
    clock_state_locked: bool | None
    clock_drift_count: int = 0
    compile_state: str = "eager"
    compile_error: str = ""
    rss_bytes: int | None = None
    gpu_allocated_bytes: int | None = None
    gpu_reserved_bytes: int | None = None
    leak_slope_bytes_per_hour: float | None = None
    requests_total: int = 0
    failures_by_cause: Mapping[str, int] = field(default_factory=dict)
    throttle_reasons: Sequence[str] = ()
    max_temp_c: float | None = None
    utilization_percent: float | None = None


def _failures(inputs: HealthInputs) -> dict[str, Any]:
    total = sum(inputs.failures_by_cause.values())
    rate = total / inputs.requests_total if inputs.requests_total else None
    return {"total": total, "rate": rate, "by_cause": dict(sorted(inputs.failures_by_cause.items()))}


def _standing_problems(inputs: HealthInputs) -> list[str]:
    """Problems worth reporting even without an RTF breach."""
    failures = sorted(inputs.failures_by_cause.items())
    problems = [f"{n} failed requests ({cause})" for cause, n in failures if n]
    if inputs.clock_state_locked is False:
        problems.insert(0, "gpu clocks not locked")
    if inputs.compile_state == "eager_fallback":
        problems.append(f"torch.compile failed, running eager: {inputs.compile_error or 'no detail'}")
    if inputs.throttle_reasons:
        problems.append("gpu throttled: " + ", ".join(inputs.throttle_reasons))
    return problems


def _problems(inputs: HealthInputs, diagnosis: Diagnosis) -> list[str]:
    """Lines worth an operator's attention, without duplicates (empty = all good)."""
    return list(dict.fromkeys(_standing_problems(inputs) + diagnosis.causes))


def daily_report(inputs: HealthInputs) -> dict[str, Any]:
    """The daily health report (JSON-friendly dict): lock, compile, memory, RTF, failures, throttling."""
    diagnosis = diagnose_rtf_breach(inputs.rtf_p95, inputs.rtf_target, inputs.clock_state_locked,
                                    inputs.throttle_reasons, inputs.max_temp_c, inputs.compile_state,
                                    inputs.utilization_percent)  # fmt: skip
    problems = _problems(inputs, diagnosis)
    return {
        "ok": not problems,
        "problems": problems,
        "clocks": {"locked": inputs.clock_state_locked, "drift_count": inputs.clock_drift_count},
        "compile": {"state": inputs.compile_state, "error": inputs.compile_error},
        "memory": {"rss_bytes": inputs.rss_bytes, "gpu_allocated_bytes": inputs.gpu_allocated_bytes,
                   "gpu_reserved_bytes": inputs.gpu_reserved_bytes,
                   "leak_slope_bytes_per_hour": inputs.leak_slope_bytes_per_hour},
        "rtf": {"p95": inputs.rtf_p95, "target": inputs.rtf_target, "breach": diagnosis.breach},
        "requests": {"total": inputs.requests_total},
        "failures": _failures(inputs),
        "thermal": {"throttle_reasons": list(inputs.throttle_reasons), "max_temp_c": inputs.max_temp_c,
                    "utilization_percent": inputs.utilization_percent},
        "diagnosis": {"causes": diagnosis.causes, "actions": list(diagnosis.actions)},
    }  # fmt: skip
