"""Soak measurement: RSS and open-fd series of the daemon and its worker, Theil–Sen slopes, limits.

Slopes are Theil–Sen (median of pairwise slopes, as the leak detector uses), so a single spike
does not move them. Limits, per process, after a warm-up, over a measured span of T hours:
    RSS   <= max(RSS_LIMIT_MIB_PER_H, RSS_NOISE_MIB / T)   64 MiB/h for 30 min; 480 MiB/h for 60 s
    fds   <= max(FD_LIMIT_PER_H, FD_NOISE / T)             60/h for 30 min; 120/h for 60 s
RSS_LIMIT_MIB_PER_H is the leak detector's default ([jobs] leak_slope_mib_per_hour). The noise terms
are what a short run can resolve: under steady load the tiny worker's RSS wanders +-10 MiB with no
trend (measured over 7 minutes: 752-779 MiB), so a 60 s run only catches fast leaks (a worker
growing 8 MiB in that minute, e.g. ~10 KiB per request at 13 req/s); the 30-minute run catches
the detector's 64 MiB/h.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import psutil
from reliability_support import DaemonProcess

from ishowttsd.decide.leak import theil_sen_slope

SAMPLE_EVERY_S = 1.0
RSS_LIMIT_MIB_PER_H, RSS_NOISE_MIB = 64.0, 8.0
FD_LIMIT_PER_H, FD_NOISE = 60.0, 2.0
MIB = 1024 * 1024


@dataclass
class Series:
    """(seconds, value) readings of one process metric."""

    times: list[float] = field(default_factory=list)
    values: list[float] = field(default_factory=list)

    def add(self, at: float, value: float) -> None:
        self.times.append(at)
        self.values.append(value)

    def slope_per_hour(self) -> float:
        return theil_sen_slope(self.times, self.values) * 3600 if len(self.times) >= 3 else 0.0


def limits_for(span_s: float) -> dict[str, float]:
    """Pure: the slope limits (bytes/h, fds/h) a run measured over `span_s` seconds is held to."""
    hours = max(span_s, 1.0) / 3600
    return {"rss": max(RSS_LIMIT_MIB_PER_H, RSS_NOISE_MIB / hours) * MIB, "fds": max(FD_LIMIT_PER_H, FD_NOISE / hours)}


def judge(series: dict[str, Series], span_s: float) -> list[str]:
    """Pure: the series whose slope is over its limit ("daemon rss", "worker fds", ...)."""
    limits = limits_for(span_s)
    problems = []
    for name, values in series.items():
        slope, limit = values.slope_per_hour(), limits[name.split()[-1]]
        if slope > limit:
            problems.append(f"{name} grows {describe(name, slope)} (limit {describe(name, limit)})")
    return problems


def describe(name: str, per_hour: float) -> str:
    return f"{per_hour / MIB:.1f} MiB/h" if name.endswith("rss") else f"{per_hour:.1f} fds/h"


class Watch:
    """Samples RSS and open fds of the daemon and of its current worker every second from a thread."""

    def __init__(self, daemon: DaemonProcess) -> None:
        assert daemon.process is not None
        self.daemon, self.main = daemon, psutil.Process(daemon.process.pid)
        self.series = {name: Series() for name in ("daemon rss", "daemon fds", "worker rss", "worker fds")}
        self.worker_pids: set[int] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Watch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        started = time.monotonic()
        while not self._stop.wait(SAMPLE_EVERY_S):
            engine = self.daemon.status()["engine"]
            at = time.monotonic() - started
            self._sample("daemon", self.main, at)
            if engine["state"] == "ready" and engine["pid"]:  # not while a worker is being replaced
                self.worker_pids.add(engine["pid"])
                self._sample("worker", psutil.Process(engine["pid"]), at)

    def _sample(self, who: str, process: psutil.Process, at: float) -> None:
        try:
            rss, fds = process.memory_info().rss, process.num_fds()
        except psutil.NoSuchProcess:
            return
        self.series[f"{who} rss"].add(at, rss)
        self.series[f"{who} fds"].add(at, fds)

    def after(self, seconds: float) -> dict[str, Series]:
        """The readings past the warm-up."""
        trimmed = {}
        for name, values in self.series.items():
            keep = [i for i, t in enumerate(values.times) if t >= seconds]
            trimmed[name] = Series([values.times[i] for i in keep], [values.values[i] for i in keep])
        return trimmed
