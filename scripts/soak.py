#!/usr/bin/env python3
"""Soak test a running ishowttsd (R31): steady load for a bounded time, watching for leaks.

While requests run at --concurrency, the daemon's and the engine worker's RSS and open file
descriptors are sampled every --sample-s (psutil; the worker's pid comes from /v1/status, the
daemon is its nearest ancestor that is not the multiprocessing fork server). After the first
--warmup-fraction of the samples, the Theil–Sen slope of each series must stay under its limit; a
restarted worker, any failed request, fewer than 3 samples after the warm-up or a slope over a limit
fails the run. A sample taken while the worker is being replaced is skipped (counted in `gaps`).
No request starts after --minutes; the ones in flight then finish.

    scripts/soak.py --socket /run/ishowttsd/ishowttsd.sock --minutes 30 --concurrency 4
Exit: 0 no leak, 1 leak or errors, 2 bad arguments, 3 the daemon cannot be reached (nothing is sent).
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

import aiohttp
import psutil

from ishowttsd.bench.load import LoadResult, check_loopback, open_session, run_load
from ishowttsd.bench.report import load_row
from ishowttsd.bench.runner import WORKLOAD_TEXT
from ishowttsd.ctl.client import connect_reason, down_message
from ishowttsd.decide.leak import theil_sen_slope

MAX_MINUTES = 24 * 60
MAX_CONCURRENCY = 1024
MIN_SAMPLES = 3
EXIT_OK, EXIT_FAILED, EXIT_UNREACHABLE = 0, 1, 3
FORK_SERVER = "multiprocessing.forkserver"
MIB = 1024 * 1024
SERIES = ("daemon_rss_mib", "worker_rss_mib", "daemon_fds", "worker_fds")


@dataclass
class Track:
    times: list[float] = field(default_factory=list)
    values: dict[str, list[float]] = field(default_factory=lambda: {k: [] for k in SERIES})
    worker_pids: set[int] = field(default_factory=set)
    daemon_pids: set[int] = field(default_factory=set)
    gaps: int = 0

    def add(self, now: float, worker: psutil.Process) -> None:
        """One sample of the daemon and `worker`; all four values or none (a process gone mid-sample)."""
        try:
            daemon = daemon_of(worker)
            readings = {f"{name}_{key}": value for name, proc in (("daemon", daemon), ("worker", worker))
                        for key, value in (("rss_mib", proc.memory_info().rss / MIB), ("fds", proc.num_fds()))}
        except psutil.Error:
            self.gaps += 1
            return
        self.times.append(now)
        self.worker_pids.add(worker.pid)
        self.daemon_pids.add(daemon.pid)
        for name, value in readings.items():
            self.values[name].append(value)


def daemon_of(worker: psutil.Process) -> psutil.Process:
    """The daemon that owns `worker`: its parent, or the fork server's parent (forkserver start method)."""
    process = worker.parent()
    while process is not None and FORK_SERVER in " ".join(process.cmdline()):
        process = process.parent()
    if process is None:
        raise psutil.NoSuchProcess(worker.pid, msg=f"engine worker {worker.pid} has no daemon above it")
    return process


def measured_samples(track: Track, warmup_fraction: float) -> int:
    return len(track.times) - int(len(track.times) * warmup_fraction)


def slopes_per_hour(track: Track, warmup_fraction: float) -> dict[str, float]:
    """Theil–Sen slope per hour of each series, after the warm-up samples (pure; needs 2+ samples left)."""
    skip = int(len(track.times) * warmup_fraction)
    xs = [t / 3600.0 for t in track.times[skip:]]
    return {name: theil_sen_slope(xs, ys[skip:]) for name, ys in track.values.items()}


def verdict(slopes: dict[str, float], limits: dict[str, float]) -> list[str]:
    """The series whose slope exceeds its limit (RSS in MiB/h, fds per hour)."""
    return [f"{name} grows {slope:.2f}/h (limit {limits[name]:g}/h)"
            for name, slope in slopes.items() if slope > limits[name]]


class Unreachable(Exception):
    """The daemon does not answer /v1/status: no load is sent."""


async def worker_process(session: Any) -> psutil.Process | None:
    """The engine worker /v1/status names; None while there is none (being replaced) or it is gone."""
    async with session.get("/v1/status") as response:
        response.raise_for_status()
        pid = ((await response.json()).get("engine") or {}).get("pid")
    try:
        return psutil.Process(int(pid)) if pid else None
    except psutil.NoSuchProcess:
        return None


async def first_worker(session: Any, where: str) -> psutil.Process | None:
    try:
        return await worker_process(session)
    except aiohttp.ClientConnectorError as exc:
        reason = connect_reason(exc.os_error) if where.startswith("/") else str(exc.os_error)
        raise Unreachable(down_message(where, reason)) from exc
    except (aiohttp.ClientError, OSError, asyncio.TimeoutError, ValueError) as exc:
        raise Unreachable(down_message(where, f"/v1/status: {type(exc).__name__}: {exc}")) from exc


async def sample(session: Any, track: Track, stop: asyncio.Event, every_s: float) -> None:
    start = time.monotonic()
    while not stop.is_set():
        try:
            worker = await worker_process(session)
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError, ValueError):
            worker = None  # the failed requests say what went wrong
        if worker is None:
            track.gaps += 1
        else:
            track.add(time.monotonic() - start, worker)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every_s)


async def soak(args: argparse.Namespace) -> tuple[LoadResult, Track]:
    track, stop = Track(), asyncio.Event()
    body = {"text": args.text, **({"nfe": args.nfe} if args.nfe else {})}
    token = Path(args.token_file).read_text().strip() if args.token_file else ""
    async with open_session("" if args.url else args.socket, args.url or "", token=token) as session:
        await first_worker(session, args.url or args.socket)
        sampler = asyncio.create_task(sample(session, track, stop, args.sample_s))
        result = await run_load(session, lambda i: {**body, "seed": i}, args.concurrency, args.max_requests,
                                max_seconds=args.minutes * 60)
        stop.set()
        await sampler
    return result, track


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--socket", default="/run/ishowttsd/ishowttsd.sock")
    where.add_argument("--url", help="loopback TCP instead of the socket, e.g. http://127.0.0.1:8765 "
                                     "(needs --token-file)")
    parser.add_argument("--token-file", help="bearer token for --url")
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
        parser.error(f"need 0 < --minutes <= {MAX_MINUTES}, --sample-s > 0, 0 <= --warmup-fraction < 1")
    if args.max_requests < 1 or not 1 <= args.concurrency <= MAX_CONCURRENCY:
        parser.error(f"need --max-requests >= 1 and 1 <= --concurrency <= {MAX_CONCURRENCY}")
    if args.max_rss_mib_per_hour < 0 or args.max_fds_per_hour < 0:
        parser.error("the slope limits --max-rss-mib-per-hour and --max-fds-per-hour must be >= 0")
    if args.url:
        try:
            check_loopback(args.url)
        except ValueError as exc:
            parser.error(str(exc))
    return args


def judge(args: argparse.Namespace, result: LoadResult, track: Track) -> dict[str, Any]:
    """The report: load summary, slopes (when there are enough samples) and every problem found."""
    limits = {"daemon_rss_mib": args.max_rss_mib_per_hour, "worker_rss_mib": args.max_rss_mib_per_hour,
              "daemon_fds": args.max_fds_per_hour, "worker_fds": args.max_fds_per_hour}
    problems: list[str] = []
    slopes: dict[str, float] = {}
    if measured_samples(track, args.warmup_fraction) < MIN_SAMPLES:
        problems.append(f"too few samples for a trend ({len(track.times)}, {MIN_SAMPLES} needed after the "
                        f"warm-up): run longer or sample more often")
    else:
        slopes = slopes_per_hour(track, args.warmup_fraction)
        problems += verdict(slopes, limits)
    problems += [f"engine worker restarted: pids {sorted(track.worker_pids)}"] * (len(track.worker_pids) > 1)
    problems += [f"daemon restarted: pids {sorted(track.daemon_pids)}"] * (len(track.daemon_pids) > 1)
    row = load_row(result)
    problems += [f"failed requests: {row['errors']}"] * bool(row["errors"])
    return {"load": row, "slopes_per_hour": slopes, "samples": len(track.times), "gaps": track.gaps,
            "pids": {"daemon": sorted(track.daemon_pids), "worker": sorted(track.worker_pids)},
            "problems": problems, "last": {name: values[-1] for name, values in track.values.items() if values}}


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    try:
        result, track = asyncio.run(soak(args))
    except Unreachable as exc:
        print(f"soak: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    report = judge(args, result, track)
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps({**report, "series": track.values, "times_s": track.times}) + "\n")
    return EXIT_FAILED if report["problems"] else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
