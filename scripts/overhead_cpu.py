#!/usr/bin/env python3
"""The daemon's per-request overhead vs calling the engine directly, side by side (tiny model, CPU).

1. direct: F5Engine.synthesize in this process, N times;
2. daemon: the same job through the real daemon's Unix socket, N times, sequentially;
   overhead = client latency - the worker's own synthesis time for that job (/v1/status totals),
   so CPU noise in the synthesis itself cancels out.

    python3 scripts/overhead_cpu.py --runs 30 --out overhead.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "integration"))

from daemon_harness import request, start_daemon

from ishowttsd.engine.f5 import F5Engine
from ishowttsd.engine.protocol import Job, VoiceRef
from ishowttsd.engine.spec import EngineSpec
from ishowttsd.voices import find_default_reference

TEXT = "Hi chat."
TRANSCRIPT = "Some call me nature, others call me mother nature."


def ms(values: list[float]) -> dict[str, float]:
    return {"median_ms": 1000 * statistics.median(values), "mean_ms": 1000 * statistics.fmean(values),
            "min_ms": 1000 * min(values)}


def direct(models: Path, runs: int) -> list[float]:
    engine = F5Engine.load(EngineSpec(model="tiny", cache_dir=str(models), device="cpu"))
    voice = VoiceRef("default", str(find_default_reference()), TRANSCRIPT)
    times = []
    for i in range(runs + 2):
        start = time.perf_counter()
        engine.synthesize(Job(i, TEXT, voice, 8, 1.0, seed=1), lambda pcm: None, lambda: None)
        times.append(time.perf_counter() - start)
    return times[2:]


def through_daemon(models: Path, runs: int) -> tuple[list[float], list[float]]:
    with tempfile.TemporaryDirectory() as tmp:
        daemon = start_daemon(Path(tmp), models, watchdog={"canary_interval_s": 3600.0, "canary_max_age_s": 7200.0})
        try:
            latencies, overheads = [], []
            for _ in range(runs + 2):
                before = daemon.status()["engine"]["synth_s_total"]
                start = time.perf_counter()
                reply = request(daemon.socket, "POST", "/v1/tts", {"text": TEXT, "seed": 1, "format": "pcm"})
                latency = time.perf_counter() - start
                assert reply.status == 200, reply.body
                synth = daemon.status()["engine"]["synth_s_total"] - before
                latencies.append(latency)
                overheads.append(latency - synth)
        finally:
            daemon.stop()
    return latencies[2:], overheads[2:]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--models", default=str(Path(tempfile.gettempdir()) / "ishowttsd-models"))
    parser.add_argument("--out")
    args = parser.parse_args()
    models = Path(args.models)
    models.mkdir(parents=True, exist_ok=True)
    engine_times = direct(models, args.runs)
    latencies, overheads = through_daemon(models, args.runs)
    result = {"direct_engine": ms(engine_times), "daemon_end_to_end": ms(latencies),
              "daemon_overhead_per_request": ms(overheads), "runs": args.runs, "text": TEXT,
              "command": " ".join(sys.argv)}
    print(json.dumps(result, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
