"""Bounded soak at steady load: RSS and open-fd slopes of the daemon and its worker, and a leak fails it.

SOAK_SECONDS (default 60) sets the measured span; the 30-minute run is
`SOAK_SECONDS=1800 .venv/bin/python -m pytest tests/reliability/test_soak.py -s` (docs/failure-modes.md).
Slopes are Theil–Sen (median of pairwise slopes, as the leak detector uses), so a single spike
does not move them. Limits, per process, after a warm-up:
    RSS   <= RSS_LIMIT_MIB_PER_H   (the leak detector's default, [jobs] leak_slope_mib_per_hour)
    fds   <= FD_LIMIT_PER_H        (one descriptor a minute; a per-request leak is thousands)
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest
from reliability_support import FAST, TINY_TEXT, DaemonProcess, LoadResult, request, run_load, start_daemon

from ishowttsd.decide.leak import theil_sen_slope

SOAK_S = float(os.environ.get("SOAK_SECONDS", "60"))
WARMUP_S = min(15.0, SOAK_S / 4)
SAMPLE_EVERY_S = 1.0
RSS_LIMIT_MIB_PER_H = 64.0
FD_LIMIT_PER_H = 60.0
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


def judge(series: dict[str, Series]) -> list[str]:
    """Pure: the series whose slope is over its limit ("daemon rss", "worker fds", ...)."""
    limits = {"rss": RSS_LIMIT_MIB_PER_H * MIB, "fds": FD_LIMIT_PER_H}
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


def steady_load(daemon: DaemonProcess, seconds: float) -> LoadResult:
    """Concurrency 2, tiny texts, for `seconds`."""
    merged, deadline = LoadResult(), time.monotonic() + seconds
    while time.monotonic() < deadline:
        merged.outcomes += run_load(daemon.socket, 8, 2, {"text": TINY_TEXT, **FAST}, 60).outcomes
    return merged


@pytest.fixture(scope="module")
def soak_daemon(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> Iterator[DaemonProcess]:
    daemon = start_daemon(tmp_path_factory.mktemp("soak"), models_dir, daemon={"fault_injection": True})
    yield daemon
    assert daemon.stop() == 0


@pytest.mark.slow
def test_steady_load_does_not_leak_memory_or_descriptors(soak_daemon: DaemonProcess) -> None:
    with Watch(soak_daemon) as watch:
        result = steady_load(soak_daemon, WARMUP_S + SOAK_S)
    measured = watch.after(WARMUP_S)
    slopes = {name: describe(name, values.slope_per_hour()) for name, values in measured.items()}
    rate = len(result.outcomes) / (WARMUP_S + SOAK_S)
    print(f"\nFIGURE soak: {SOAK_S:.0f}s measured after {WARMUP_S:.0f}s warm-up, {len(result.outcomes)} requests "
          f"({rate:.1f}/s) {result.by_status()}; slopes {slopes}; worker pids {sorted(watch.worker_pids)}")
    assert result.by_status() == {200: len(result.outcomes)}
    assert len(watch.worker_pids) == 1, "the worker was replaced during the soak"
    assert not judge(measured), judge(measured)


@pytest.mark.slow
def test_the_soak_check_catches_a_real_leak(soak_daemon: DaemonProcess) -> None:
    """The same measurement on a worker that really leaks (fault injection: 4 MiB every 0.5 s)."""
    with Watch(soak_daemon) as watch:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            assert request(soak_daemon.socket, "POST", "/v1/admin/fault",
                           {"kind": "grow_memory", "amount": 4 * MIB}).status == 200
            assert request(soak_daemon.socket, "POST", "/v1/tts", {"text": TINY_TEXT, **FAST}).status == 200
            time.sleep(0.5)
    problems = judge(watch.after(0))
    print(f"\nFIGURE soak leak check: {problems}")
    assert any(problem.startswith("worker rss") for problem in problems), problems


def test_judge_flags_only_slopes_over_the_limits() -> None:
    flat = Series(list(range(60)), [100 * MIB] * 60)
    spiky = Series(list(range(60)), [100 * MIB + (50 * MIB if i == 30 else 0) for i in range(60)])
    leaking_fds = Series(list(range(60)), [20 + i for i in range(60)])  # one per second
    growing = Series(list(range(60)), [100 * MIB + i * MIB // 10 for i in range(60)])  # 360 MiB/h
    assert judge({"daemon rss": flat, "worker rss": spiky, "worker fds": Series(list(range(60)), [9] * 60)}) == []
    assert [p.split(" grows")[0] for p in judge({"worker fds": leaking_fds, "daemon rss": growing})] == [
        "worker fds", "daemon rss"]
