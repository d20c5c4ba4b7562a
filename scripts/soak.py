#!/usr/bin/env python3
"""Soak test a running ishowttsd (R31): steady load for a bounded time, watching for leaks.

While requests run at --concurrency, the daemon's and the engine worker's RSS and open file
descriptors are sampled every --sample-s (psutil; the worker's pid comes from /v1/status, the
daemon is its parent). After the first --warmup-fraction of the samples, the Theil–Sen slope of each
series must stay under its limit; a restarted worker, any failed request or a slope over a limit
fails the run.

    scripts/soak.py --socket /run/ishowttsd/ishowttsd.sock --minutes 30 --concurrency 4
Exit: 0 no leak, 1 leak or errors, 2 bad arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from ishowttsd.bench.load import LoadResult, check_loopback, open_session, run_load
from ishowttsd.bench.report import load_row
from ishowttsd.bench.runner import WORKLOAD_TEXT
from ishowttsd.decide.leak import theil_sen_slope

MAX_MINUTES = 24 * 60
MIB = 1024 * 1024
SERIES = ("daemon_rss_mib", "worker_rss_mib", "daemon_fds", "worker_fds")


@dataclass
class Track:
    times: list[float] = field(default_factory=list)
    values: dict[str, list[float]] = field(default_factory=lambda: {k: [] for k in SERIES})
    worker_pids: set[int] = field(default_factory=set)

    def add(self, now: float, worker: psutil.Process) -> None:
        daemon = worker.parent()
        if daemon is None:
            raise RuntimeError(f"engine worker {worker.pid} has no parent")
        self.times.append(now)
        self.worker_pids.add(worker.pid)
        for name, proc in (("daemon", daemon), ("worker", worker)):
            self.values[f"{name}_rss_mib"].append(proc.memory_info().rss / MIB)
            self.values[f"{name}_fds"].append(proc.num_fds())


def slopes_per_hour(track: Track, warmup_fraction: float) -> dict[str, float]:
    """Theil–Sen slope per hour of each series, after the warm-up samples (pure)."""
    skip = int(len(track.times) * warmup_fraction)
    xs = [t / 3600.0 for t in track.times[skip:]]
    return {name: theil_sen_slope(xs, ys[skip:]) for name, ys in track.values.items()}


def verdict(slopes: dict[str, float], limits: dict[str, float]) -> list[str]:
    """The series whose slope exceeds its limit (RSS in MiB/h, fds per hour)."""
    return [f"{name} grows {slope:.2f}/h (limit {limits[name]:g}/h)"
            for name, slope in slopes.items() if slope > limits[name]]


async def worker_process(session: Any) -> psutil.Process:
    async with session.get("/v1/status") as response:
        pid = (await response.json())["engine"]["pid"]
    if not pid:
        raise RuntimeError("the daemon reports no engine worker pid")
    return psutil.Process(int(pid))


async def sample(session: Any, track: Track, stop: asyncio.Event, every_s: float) -> None:
    start = time.monotonic()
    while not stop.is_set():
        track.add(time.monotonic() - start, await worker_process(session))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every_s)


async def soak(args: argparse.Namespace) -> tuple[LoadResult, Track]:
    track, stop = Track(), asyncio.Event()
    body = {"text": args.text, **({"nfe": args.nfe} if args.nfe else {})}
    async with open_session("" if args.url else args.socket, args.url or "") as session:
        sampler = asyncio.create_task(sample(session, track, stop, args.sample_s))
        result = await run_load(session, lambda i: {**body, "seed": i}, args.concurrency, args.max_requests,
                                max_seconds=args.minutes * 60)
        stop.set()
        await sampler
    return result, track


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--socket", default="/run/ishowttsd/ishowttsd.sock")
    parser.add_argument("--url", help="loopback TCP instead of the socket")
    parser.add_argument("--minutes", type=float, default=30.0, help=f"how long (<= {MAX_MINUTES})")
    parser.add_argument("--max-requests", type=int, default=1_000_000)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--sample-s", type=float, default=10.0)
    parser.add_argument("--warmup-fraction", type=float, default=0.2)
    parser.add_argument("--max-rss-mib-per-hour", type=float, default=32.0)
    parser.add_argument("--max-fds-per-hour", type=float, default=10.0)
    parser.add_argument("--text", default=WORKLOAD_TEXT)
    parser.add_argument("--nfe", type=int)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if not 0 < args.minutes <= MAX_MINUTES or args.sample_s <= 0 or not 0 <= args.warmup_fraction < 1:
        parser.error("need 0 < --minutes <= 1440, --sample-s > 0, 0 <= --warmup-fraction < 1")
    if args.url:
        check_loopback(args.url)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    result, track = asyncio.run(soak(args))
    if len(track.times) < 3:
        print("too few samples for a trend: run longer or sample more often")
        return 1
    limits = {"daemon_rss_mib": args.max_rss_mib_per_hour, "worker_rss_mib": args.max_rss_mib_per_hour,
              "daemon_fds": args.max_fds_per_hour, "worker_fds": args.max_fds_per_hour}
    slopes = slopes_per_hour(track, args.warmup_fraction)
    problems = verdict(slopes, limits)
    problems += [f"engine worker restarted: pids {sorted(track.worker_pids)}"] * (len(track.worker_pids) > 1)
    row = load_row(result)
    problems += [f"failed requests: {row['errors']}"] * bool(row["errors"])
    report = {"load": row, "slopes_per_hour": slopes, "samples": len(track.times), "problems": problems,
              "last": {name: values[-1] for name, values in track.values.items()}}
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps({**report, "series": track.values, "times_s": track.times}) + "\n")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
