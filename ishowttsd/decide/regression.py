"""Benchmark regression check (R10, R12, R17): against the RTF target and against its own history.

Pure: results come in as dataclasses or plain dicts (decoded JSON lines of the benchmark history).
Only comparable runs are compared: same `comparison_key` (model, device, nfe, compiled).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

# How many of the most recent comparable runs form the baseline, and how many are needed at least.
DEFAULT_BASELINE_RUNS = 5
DEFAULT_MIN_HISTORY = 3


@dataclass(frozen=True, slots=True)
class BenchResult:
    """One benchmark run as stored in the benchmark history (one JSON line)."""

    model: str
    device: str
    nfe: int
    compiled: bool
    rtf_mean: float
    rtf_p95: float
    latency_p95_s: float
    throughput: float  # utterances per second
    timestamp_s: float = 0.0


@dataclass(frozen=True, slots=True)
class RegressionReport:
    """Outcome of one check; `baseline`/`ratio` are about rtf_mean (None without comparable history)."""

    regressed: bool
    against_target: bool
    against_history: bool
    baseline: float | None
    ratio: float | None
    messages: list[str] = field(default_factory=list)


BenchLike = BenchResult | Mapping[str, Any]
ComparisonKey = tuple[str, str, int, bool]

# metric → True when a higher value is worse (RTF, latency), False when lower is worse (throughput)
_HIGHER_IS_WORSE: dict[str, bool] = {
    "rtf_mean": True,
    "rtf_p95": True,
    "latency_p95_s": True,
    "throughput": False,
}


def _get(run: BenchLike, name: str) -> Any:
    """A field of a run, whether it is a mapping or a dataclass; None when absent."""
    if isinstance(run, Mapping):
        return run.get(name)
    return getattr(run, name, None)


def comparison_key(run: BenchLike) -> ComparisonKey:
    """What makes two runs comparable: (model, device, nfe, compiled)."""
    model, device, nfe, compiled = (_get(run, k) for k in ("model", "device", "nfe", "compiled"))
    return (str(model), str(device), int(nfe), bool(compiled))


def _baseline(values: Sequence[float | None], runs: int) -> float | None:
    """Median of the last `runs` known values; None when there are none."""
    known = [float(v) for v in values if v is not None][-runs:]
    return statistics.median(known) if known else None


def _worse_ratio(current: float, baseline: float, higher_is_worse: bool) -> float:
    """How many times worse the current value is than the (positive) baseline (> 1 is worse)."""
    if higher_is_worse:
        return current / baseline
    return baseline / current if current > 0 else math.inf


def _metric_messages(
    current: BenchLike, comparable: Sequence[BenchLike], tolerance: float, runs: int
) -> list[str]:
    """One message per metric that is worse than its baseline by more than `tolerance`."""
    messages: list[str] = []
    for metric, higher_is_worse in _HIGHER_IS_WORSE.items():
        value, base = _get(current, metric), _baseline([_get(r, metric) for r in comparable], runs)
        if value is None or base is None or base <= 0:
            continue
        ratio = _worse_ratio(float(value), base, higher_is_worse)
        if ratio > 1.0 + tolerance:
            messages.append(f"{metric} {float(value):.4g} vs baseline {base:.4g}: {ratio:.2f}x worse")
    return messages


def _target_messages(current: BenchLike, target_rtf: float) -> list[str]:
    """A message when the mean RTF misses the target."""
    rtf = float(_get(current, "rtf_mean"))
    return [f"rtf_mean {rtf:.4g} above target {target_rtf:.4g}"] if rtf > target_rtf else []


def check_benchmark(
    current: BenchLike,
    history: Sequence[BenchLike],
    target_rtf: float,
    tolerance: float = 0.15,
    *,
    baseline_runs: int = DEFAULT_BASELINE_RUNS,
    min_history: int = DEFAULT_MIN_HISTORY,
) -> RegressionReport:
    """Compare a benchmark run with the RTF target and with the median of its last comparable runs.

    `history` is oldest first and must not contain `current`. A metric regresses against history
    when it is worse than its baseline by more than `tolerance` (0.15 = 15 %); history is only
    judged once `min_history` comparable runs exist.
    """
    key = comparison_key(current)
    comparable = [r for r in history if comparison_key(r) == key]
    target_msgs = _target_messages(current, target_rtf)
    baseline = _baseline([_get(r, "rtf_mean") for r in comparable], baseline_runs)
    ratio = float(_get(current, "rtf_mean")) / baseline if baseline and baseline > 0 else None
    enough = len(comparable) >= min_history
    history_msgs = _metric_messages(current, comparable, tolerance, baseline_runs) if enough else []
    note = [] if enough else [f"history not judged: {len(comparable)} comparable runs < {min_history}: {key}"]
    return RegressionReport(
        regressed=bool(target_msgs or history_msgs),
        against_target=bool(target_msgs),
        against_history=bool(history_msgs),
        baseline=baseline,
        ratio=ratio,
        messages=target_msgs + history_msgs + note,
    )
