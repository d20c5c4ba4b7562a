"""Descriptive statistics for benchmarks (R29) and the status line (R28).

Pure functions over numbers: no clocks are read here, the current time is always a parameter.
Percentiles use linear interpolation between closest ranks (numpy's default "linear" method,
`statistics.quantiles(method="inclusive")`).
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass


@dataclass(frozen=True, slots=True)
class Summary:
    """Summary of a sample: what the benchmark protocol (R29) prints and the status line reads."""

    n: int
    mean: float
    median: float
    p50: float
    p95: float
    p99: float
    std: float  # sample standard deviation (n - 1 denominator); 0.0 for n = 1
    min: float
    max: float

    def as_dict(self) -> dict[str, float]:
        """The summary as a plain JSON-friendly dict."""
        return asdict(self)


def _checked(samples: Iterable[float]) -> list[float]:
    """The samples as floats; ValueError when empty or when one is NaN or infinite."""
    values = [float(v) for v in samples]
    if not values:
        raise ValueError("cannot summarise an empty sample")
    if not all(math.isfinite(v) for v in values):
        raise ValueError("samples must be finite numbers")
    return values


def percentile(samples: Sequence[float], pct: int) -> float:
    """The `pct`-th percentile (integer 1..99) by linear interpolation; the value itself for n = 1."""
    if not 1 <= pct <= 99:
        raise ValueError(f"percentile must be an integer in 1..99, got {pct}")
    values = _checked(samples)
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[pct - 1]


def summarize(samples: Sequence[float]) -> Summary:
    """n, mean, median, p50/p95/p99, sample std, min and max of `samples` (ValueError when empty)."""
    values = _checked(samples)
    cuts = statistics.quantiles(values, n=100, method="inclusive") if len(values) > 1 else values * 99
    return Summary(
        n=len(values),
        mean=statistics.fmean(values),
        median=statistics.median(values),
        p50=cuts[49],
        p95=cuts[94],
        p99=cuts[98],
        std=statistics.stdev(values) if len(values) > 1 else 0.0,
        min=min(values),
        max=max(values),
    )


class RollingWindow:
    """The last `maxlen` values (recent latencies, RTFs) with a summary on demand."""

    def __init__(self, maxlen: int) -> None:
        if maxlen < 1:
            raise ValueError(f"maxlen must be >= 1, got {maxlen}")
        self._values: deque[float] = deque(maxlen=maxlen)

    def add(self, value: float) -> None:
        """Append a finite value, dropping the oldest one once the window is full."""
        if not math.isfinite(value):
            raise ValueError(f"value must be finite, got {value}")
        self._values.append(float(value))

    def values(self) -> list[float]:
        """The values held, oldest first."""
        return list(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def summary(self) -> Summary | None:
        """Summary of the values held; None while the window is empty."""
        return summarize(self._values) if self._values else None


def rate_per_s(timestamps: Iterable[float], now: float, window_s: float) -> float:
    """Events per second over the last `window_s` seconds: those with now - window_s < t <= now."""
    if window_s <= 0:
        raise ValueError(f"window_s must be > 0, got {window_s}")
    start = now - window_s
    return sum(1 for t in timestamps if start < t <= now) / window_s
