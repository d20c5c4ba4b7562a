"""Memory-leak decision (R19, R25): robust trend + absolute ceilings → recycle the engine or not.

Pure: the memory history and the current time come in as arguments.
The trend is the Theil–Sen slope (median of pairwise slopes), which ignores a single spike:
one outlier touches only 2/n of the pairs, far from moving the median.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

# Theil–Sen is O(n²) in pairs: above this many points the series is thinned to evenly spaced
# points (deterministic), so at most 500·499/2 = 124 750 slopes are computed.
MAX_THEIL_SEN_POINTS = 500
# A ceiling counts as crossed when the median of the last few samples is above it (one spike is not enough).
CEILING_CONFIRM_SAMPLES = 3
SECONDS_PER_HOUR = 3600.0
MIB = 1024 * 1024


class MemoryRecord(Protocol):
    """What the leak detector reads from one memory history entry (the sampler writes these)."""

    @property
    def timestamp_s(self) -> float: ...
    @property
    def rss_bytes(self) -> int: ...
    @property
    def gpu_allocated_bytes(self) -> int: ...
    @property
    def gpu_reserved_bytes(self) -> int: ...


@dataclass(frozen=True, slots=True)
class MemorySample:
    """One memory history entry: wall time (epoch seconds) and the worker's memory in bytes."""

    timestamp_s: float
    rss_bytes: int
    gpu_allocated_bytes: int = 0
    gpu_reserved_bytes: int = 0

    @classmethod
    def from_mapping(cls, record: Mapping[str, float]) -> MemorySample:
        """Build from a decoded JSON-lines record; missing GPU fields read as 0."""
        return cls(
            timestamp_s=float(record["timestamp_s"]),
            rss_bytes=int(record["rss_bytes"]),
            gpu_allocated_bytes=int(record.get("gpu_allocated_bytes", 0)),
            gpu_reserved_bytes=int(record.get("gpu_reserved_bytes", 0)),
        )


@dataclass(frozen=True, slots=True)
class RecycleDecision:
    """Whether to drain and recycle the engine worker, and why (metric "" when nothing stands out)."""

    recycle: bool
    reason: str
    metric: str = ""
    slope_bytes_per_hour: float | None = None
    value: int | None = None


def _thin(n: int, limit: int) -> list[int]:
    """`limit` evenly spaced indices into range(n), first and last included (all when n <= limit)."""
    if n <= limit:
        return list(range(n))
    return [round(i * (n - 1) / (limit - 1)) for i in range(limit)]


def theil_sen_slope(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Median of the slopes (yj - yi) / (xj - xi) over all pairs with xi != xj.

    O(n²); series longer than MAX_THEIL_SEN_POINTS are thinned deterministically first.
    ValueError when lengths differ or fewer than two distinct x values exist.
    """
    if len(xs) != len(ys):
        raise ValueError(f"xs and ys differ in length ({len(xs)} != {len(ys)})")
    keep = _thin(len(xs), MAX_THEIL_SEN_POINTS)
    px, py = [float(xs[i]) for i in keep], [float(ys[i]) for i in keep]
    slopes = [
        (py[j] - py[i]) / (px[j] - px[i])
        for i in range(len(px))
        for j in range(i + 1, len(px))
        if px[j] != px[i]
    ]
    if not slopes:
        raise ValueError("need at least two distinct x values")
    return statistics.median(slopes)


# metric name → which ceiling applies to it
_CEILING_OF_METRIC: dict[str, str] = {
    "rss_bytes": "rss",
    "gpu_allocated_bytes": "gpu",
    "gpu_reserved_bytes": "gpu",
}


def _recent(
    history: Sequence[MemoryRecord], since_s: float | None, now_s: float, window: int
) -> list[MemoryRecord]:
    """The last `window` samples taken after `since_s` (the last recycle) and not after `now_s`."""
    start = float("-inf") if since_s is None else since_s
    usable = sorted((r for r in history if start < r.timestamp_s <= now_s), key=lambda r: r.timestamp_s)
    return usable[-window:]


def _ceiling_breach(samples: list[MemoryRecord], ceilings: Mapping[str, int]) -> RecycleDecision | None:
    """A recycle decision when a metric's recent median is above its ceiling (0 = ceiling off)."""
    tail = samples[-CEILING_CONFIRM_SAMPLES:]
    if len(tail) < CEILING_CONFIRM_SAMPLES:
        return None
    for metric, which in _CEILING_OF_METRIC.items():
        value = int(statistics.median(getattr(r, metric) for r in tail))
        ceiling = ceilings[which]
        if ceiling > 0 and value > ceiling:
            reason = f"{metric} {value / MIB:.0f} MiB above ceiling {ceiling / MIB:.0f} MiB"
            return RecycleDecision(True, reason, metric, None, value)
    return None


def _slopes(samples: list[MemoryRecord]) -> dict[str, float]:
    """Theil–Sen slope of every metric in bytes per hour."""
    xs = [r.timestamp_s for r in samples]
    return {
        metric: theil_sen_slope(xs, [getattr(r, metric) for r in samples]) * SECONDS_PER_HOUR
        for metric in _CEILING_OF_METRIC
    }


def _not_enough(samples: list[MemoryRecord], min_samples: int, min_span_s: float) -> str | None:
    """Why the trend cannot be judged yet (too few samples, too short a span), or None."""
    if len(samples) < max(min_samples, 2):
        return f"too few samples to judge a trend ({len(samples)} < {max(min_samples, 2)})"
    span = samples[-1].timestamp_s - samples[0].timestamp_s
    if span < min_span_s or span <= 0:
        return f"time span too short to judge a trend ({span:.0f} s < {min_span_s:.0f} s)"
    return None


def _trend_decision(samples: list[MemoryRecord], threshold: float) -> RecycleDecision:
    """Recycle when the steepest metric grows faster than `threshold` bytes per hour."""
    slopes = _slopes(samples)
    metric = max(slopes, key=lambda m: slopes[m])
    slope, value = slopes[metric], int(getattr(samples[-1], metric))
    rate = f"{metric} trend {slope / MIB:+.1f} MiB/h"
    if slope > threshold:
        return RecycleDecision(True, f"{rate} above {threshold / MIB:.1f} MiB/h", metric, slope, value)
    return RecycleDecision(False, f"no leak: {rate} within {threshold / MIB:.1f} MiB/h", metric, slope, value)


def decide_recycle(
    history: Sequence[MemoryRecord],
    *,
    window: int,
    slope_threshold_bytes_per_hour: float,
    rss_ceiling_bytes: int,
    gpu_ceiling_bytes: int,
    min_samples: int,
    now_s: float,
    since_s: float | None = None,
    min_span_s: float = 600.0,
) -> RecycleDecision:
    """Decide whether the engine worker leaks and must be recycled.

    Uses only samples after `since_s` (the last recycle: a fresh worker starts a fresh trend) and
    at or before `now_s`, the last `window` of them. Ceilings (0 = off) are checked first on the
    median of the last CEILING_CONFIRM_SAMPLES samples; then the Theil–Sen slope of each metric
    (rss, gpu allocated, gpu reserved) is compared with the threshold, once at least `min_samples`
    samples spanning at least `min_span_s` seconds are there.
    """
    if window < 2:
        raise ValueError(f"window must be >= 2, got {window}")
    samples = _recent(history, since_s, now_s, window)
    breach = _ceiling_breach(samples, {"rss": rss_ceiling_bytes, "gpu": gpu_ceiling_bytes})
    if breach is not None:
        return breach
    refusal = _not_enough(samples, min_samples, min_span_s)
    if refusal is not None:
        return RecycleDecision(False, refusal)
    return _trend_decision(samples, slope_threshold_bytes_per_hour)
