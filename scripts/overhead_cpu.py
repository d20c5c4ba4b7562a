#!/usr/bin/env python3
"""The daemon's per-request overhead vs calling the engine directly, side by side (tiny model, CPU).

1. direct: F5Engine.synthesize in this process, N times;
2. daemon: the same job through the real daemon's Unix socket, N times, sequentially;
   overhead = client latency - the worker's own synthesis time for that job (/v1/status totals),
   so CPU noise in the synthesis itself cancels out. A GET /healthz round trip is timed too, for scale.

The daemon runs with the shipped [logging] level and [engine] ping interval (not the test harness's
debug/0.5 s). With --baseline-tree (another checkout, e.g. `git worktree add /tmp/base HEAD~1`;
repeatable), a daemon from each tree runs beside this tree's and requests alternate between them
(the order reversed every round), so before/after comparisons see the same machine load: the box is
shared, compare within one run ("paired_overhead_differences": the per-round differences, which
also cancel slow drifts in the load). --settle-ms (default 50) pauses before each request, so one
daemon's worker threads are idle again before the next request starts; 0 = back to back (warm
caches: the healthz round trip is ~0.5 ms back to back and ~1.2 ms after a 50 ms pause on the
2-core box). A copy of HEAD for the baseline: `mkdir /tmp/base && git archive HEAD | tar -x -C /tmp/base`.
In A/A runs (the same code twice) the daemon listed second came out 0.15-0.3 ms cheaper: run both
orientations (the baseline copy's own script with --baseline-tree pointing here) and average.
--connection: "new" (the default, as before) opens a new connection for every request; "keep-alive"
sends every synthesis over one open connection per daemon, as a chat bot with an aiohttp session
does; "both" times each way every round, reported apart ("..._keep_alive" keys).

    python3 scripts/overhead_cpu.py --runs 30 --out overhead.json
    python3 scripts/overhead_cpu.py --runs 30 --baseline-tree /tmp/base --settle-ms 0 --out overhead.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "integration"))

from daemon_harness import DaemonProcess, Reply, UnixHTTPConnection, request, start_daemon

from ishowttsd.engine.f5 import F5Engine
from ishowttsd.engine.protocol import Job, VoiceRef
from ishowttsd.engine.spec import EngineSpec
from ishowttsd.voices import find_default_reference

REPO = Path(__file__).resolve().parent.parent
TEXT = "Hi chat."
TRANSCRIPT = "Some call me nature, others call me mother nature."
BODY = {"text": TEXT, "seed": 1, "format": "pcm"}
CONNECTIONS = {"new": ("new",), "keep-alive": ("keep_alive",), "both": ("new", "keep_alive")}
SUFFIX = {"new": "", "keep_alive": "_keep_alive"}  # result keys: the new-connection figures keep theirs
WARMUP = 2
SETTLE_MS = 50.0  # before each request: torch's idle CPU threads spin for a while after a batch
SHIPPED_SETTINGS = {"logging": {"format": "json", "level": "info"}, "engine": {"ping_interval_s": 2.0},
                    "watchdog": {"canary_interval_s": 3600.0, "canary_max_age_s": 7200.0}}


def ms(values: list[float]) -> dict[str, float]:
    """Median, mean, min and the 10th/90th percentiles (the spread), in milliseconds."""
    deciles = statistics.quantiles(values, n=10) if len(values) > 1 else values * 9
    return {"median_ms": 1000 * statistics.median(values), "mean_ms": 1000 * statistics.fmean(values),
            "min_ms": 1000 * min(values), "p10_ms": 1000 * deciles[0], "p90_ms": 1000 * deciles[-1]}


def direct(models: Path, runs: int) -> list[float]:
    engine = F5Engine.load(EngineSpec(model="tiny", cache_dir=str(models), device="cpu"))
    voice = VoiceRef("default", str(find_default_reference()), TRANSCRIPT)
    times = []
    for i in range(runs + WARMUP):
        start = time.perf_counter()
        engine.synthesize(Job(i, TEXT, voice, 8, 1.0, seed=1), lambda pcm: None, lambda: None)
        times.append(time.perf_counter() - start)
    return times[WARMUP:]


class Sampler:
    """One daemon's timings: latency and overhead per synthesis (per connection mode), healthz round trips."""

    def __init__(self, daemon: DaemonProcess, modes: tuple[str, ...] = ("new",)) -> None:
        self.daemon, self.modes = daemon, modes
        self.latencies: dict[str, list[float]] = {mode: [] for mode in modes}
        self.overheads: dict[str, list[float]] = {mode: [] for mode in modes}
        self.healthz: list[float] = []
        self._open: UnixHTTPConnection | None = None  # the keep-alive connection

    def synthesis(self) -> None:
        for mode in self.modes:
            self._synthesis(mode)

    def _synthesis(self, mode: str) -> None:
        before = self.daemon.status()["engine"]["synth_s_total"]
        start = time.perf_counter()
        reply = self._post_kept() if mode == "keep_alive" else request(self.daemon.socket, "POST", "/v1/tts", BODY)
        latency = time.perf_counter() - start
        assert reply.status == 200, reply.body
        synth = self.daemon.status()["engine"]["synth_s_total"] - before
        self.latencies[mode].append(latency)
        self.overheads[mode].append(latency - synth)

    def _post_kept(self) -> Reply:
        """POST /v1/tts over the connection kept open (http.client reuses it after a complete read)."""
        if self._open is None:
            self._open = UnixHTTPConnection(self.daemon.socket)
        self._open.request("POST", "/v1/tts", body=json.dumps(BODY).encode(),
                           headers={"Content-Type": "application/json"})
        response = self._open.getresponse()
        return Reply(response.status, {}, response.read())

    def health(self) -> None:
        start = time.perf_counter()
        assert request(self.daemon.socket, "GET", "/healthz").status == 200
        self.healthz.append(time.perf_counter() - start)

    def summary(self) -> dict[str, object]:
        result: dict[str, object] = {}
        for mode in self.modes:
            result[f"daemon_end_to_end{SUFFIX[mode]}"] = ms(self.latencies[mode][WARMUP:])
            result[f"daemon_overhead_per_request{SUFFIX[mode]}"] = ms(self.overheads[mode][WARMUP:])
        return {**result, "healthz_round_trip": ms(self.healthz)}


@contextlib.contextmanager
def daemon_from(tree: Path, directory: Path, models: Path) -> Iterator[DaemonProcess]:
    """A daemon importing ishowttsd from `tree` (python -m puts the working directory first on sys.path)."""
    here = Path.cwd()
    os.chdir(tree)
    try:
        daemon = start_daemon(directory, models, env={"PYTHONPATH": str(tree)}, **SHIPPED_SETTINGS)
    finally:
        os.chdir(here)
    try:
        yield daemon
    finally:
        daemon.stop()


def alternate(samplers: list[Sampler], runs: int, settle_s: float) -> None:
    """Each round one synthesis and one healthz per daemon; the daemons' order reverses every round."""
    for round_ in range(runs + WARMUP):
        for sampler in samplers if round_ % 2 == 0 else samplers[::-1]:
            for step in (Sampler.synthesis, Sampler.health):
                time.sleep(settle_s)
                step(sampler)


def paired_differences(samplers: dict[str, Sampler], mode: str) -> dict[str, dict[str, float]]:
    """This tree's overhead minus each other tree's, round by round (both measured within ~0.5 s of
    each other, so slow drifts in the box's load cancel): negative = this tree is cheaper."""
    ours = samplers["this_tree"].overheads[mode][WARMUP:]
    return {f"this_tree_minus_{name}": ms([a - b for a, b in zip(ours, s.overheads[mode][WARMUP:], strict=True)])
            for name, s in samplers.items() if name != "this_tree"}


def through_daemons(trees: dict[str, Path], models: Path, runs: int, settle_s: float,
                    modes: tuple[str, ...]) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        samplers = {name: Sampler(stack.enter_context(daemon_from(tree, Path(tmp) / str(index), models)), modes)
                    for index, (name, tree) in enumerate(trees.items())}
        alternate(list(samplers.values()), runs, settle_s)
        return {**{name: sampler.summary() for name, sampler in samplers.items()},
                **{f"paired_overhead_differences{SUFFIX[mode]}": paired_differences(samplers, mode)
                   for mode in modes}}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--models", default=str(Path(tempfile.gettempdir()) / "ishowttsd-models"))
    parser.add_argument("--baseline-tree", action="append", default=[],
                        help="another checkout whose daemon runs alternately beside this one (repeatable)")
    parser.add_argument("--direct-runs", type=int, help="in-process engine runs (default --runs; 0 = skip)")
    parser.add_argument("--settle-ms", type=float, default=SETTLE_MS, help="pause before each request")
    parser.add_argument("--connection", choices=sorted(CONNECTIONS), default="new",
                        help="new connection per request (default), one kept open, or both each round")
    parser.add_argument("--out")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    models = Path(args.models)
    models.mkdir(parents=True, exist_ok=True)
    trees = {"this_tree": REPO, **{f"tree:{tree}": Path(tree).resolve() for tree in args.baseline_tree}}
    direct_runs = args.runs if args.direct_runs is None else args.direct_runs
    result: dict[str, object] = {"direct_engine": ms(direct(models, direct_runs)) if direct_runs else None}
    result.update(through_daemons(trees, models, args.runs, args.settle_ms / 1000, CONNECTIONS[args.connection]))
    result.update(runs=args.runs, settle_ms=args.settle_ms, connection=args.connection, text=TEXT,
                  settings=SHIPPED_SETTINGS,
                  command=" ".join(sys.argv))
    print(json.dumps(result, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
