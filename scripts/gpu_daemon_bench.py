#!/usr/bin/env python3
"""End-to-end figures through the real daemon's Unix socket: cold start, warm restart, latency, TTFA,
throughput per concurrency, NFE sweep, quality. Writes one JSON file and the daemon's log.

    python3 scripts/gpu_daemon_bench.py --work /tmp/dbench --models /tmp/models --out $OUT/daemon.json \
        --model random:F5TTS_v1_Base --dtype fp16 --compile --engine '{"max_batch": 32}'

--engine sets any other [engine] key of the daemon's config; --phases picks what to measure
(cold start is always measured): bench, c32, quality, kill (SIGKILL the worker, time until a new one
is ready), restart (stop the daemon, start it again on the warm compile cache).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "integration"))

from daemon_harness import request, write_config

from ishowttsd.bench.load import open_session, run_load
from ishowttsd.bench.quality import run_quality
from ishowttsd.bench.report import load_row
from ishowttsd.bench.runner import WORKLOAD_TEXT, BenchPlan, run_benchmark
from ishowttsd.engine.protocol import VoiceRef
from ishowttsd.engine.spec import EngineSpec
from ishowttsd.voices import find_default_reference

ROOT = Path(__file__).resolve().parent.parent
TRANSCRIPT = "Some call me nature, others call me mother nature."


def log(*args: object) -> None:
    print(f"[{time.strftime('%H:%M:%S')}]", *args, flush=True)


class Daemon:
    def __init__(self, work: Path, config: Path) -> None:
        self.work, self.config = work, config
        self.socket = str(work / "ishowttsd.sock")
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float) -> float:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TORCHINDUCTOR", "TRITON_CACHE"))}
        env.update(PYTHONUNBUFFERED="1")
        env.pop("NOTIFY_SOCKET", None)
        started = time.monotonic()
        with (self.work / "daemon.log").open("ab") as out:
            command = [sys.executable, "-m", "ishowttsd", "--config", str(self.config)]
            self.process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
        while time.monotonic() - started < timeout_s:
            if self.process.poll() is not None:
                raise RuntimeError(f"daemon exited {self.process.returncode}")
            try:
                if request(self.socket, "GET", "/readyz", timeout=5).status == 200:
                    return time.monotonic() - started
            except OSError:
                pass
            time.sleep(0.1)
        raise TimeoutError("daemon not ready")

    def status(self) -> dict[str, Any]:
        return request(self.socket, "GET", "/v1/status").json()

    def worker_back_after_kill(self, timeout_s: float) -> dict[str, Any]:
        """SIGKILL the engine worker; seconds until a different worker is ready (with [engine] standby,
        once the standby is ready: the figure is then its take-over, "standby_wait_s" the wait before)."""
        waited = time.monotonic()
        while self.status()["engine"].get("standby", {}).get("state") in ("none", "booting"):
            if time.monotonic() - waited > timeout_s:
                raise TimeoutError("standby not ready")
            time.sleep(0.2)
        standby_wait_s = time.monotonic() - waited
        old = self.status()["engine"]["pid"]
        os.kill(old, signal.SIGKILL)
        killed = time.monotonic()
        while time.monotonic() - killed < timeout_s:
            engine = self.status()["engine"]
            if engine["state"] == "ready" and engine["pid"] not in (None, old):
                return {"back_s": time.monotonic() - killed, "standby_wait_s": standby_wait_s, "engine": engine}
            time.sleep(0.05)
        raise TimeoutError("worker not back")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(60)


async def throughput(socket: str, concurrency: int, count: int) -> dict[str, Any]:
    async with open_session(socket) as session:
        await run_load(session, lambda i: {"text": WORKLOAD_TEXT, "seed": i, "nfe": 8}, concurrency, concurrency)
        return load_row(await run_load(session, lambda i: {"text": WORKLOAD_TEXT, "seed": i, "nfe": 8},
                                       concurrency, count))


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--work", required=True)
    parser.add_argument("--models", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--model", default="random:F5TTS_v1_Base")
    parser.add_argument("--dtype", default="fp16")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--engine", default="{}", help="more [engine] config keys (JSON object)")
    parser.add_argument("--phases", default="bench,c32,quality,kill,restart")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32])
    parser.add_argument("--stream-concurrency", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--nfe", type=int, nargs="+", default=[8, 12, 16, 32])
    parser.add_argument("--saturate", type=int, default=256, help="requests for the c=32 throughput run")
    parser.add_argument("--boot-timeout", type=float, default=400.0)
    return parser.parse_args()


def main() -> int:
    args = parse()
    work, out = Path(args.work), Path(args.out)
    work.mkdir(parents=True, exist_ok=True)
    config = write_config(work, Path(args.models),
                          engine={"model": args.model, "device": args.device, "dtype": args.dtype,
                                  "compile": args.compile, "ping_interval_s": 2.0, "heartbeat_timeout_s": 120.0,
                                  **json.loads(args.engine)},
                          gpu={"backend": "none", "lock_clocks": False},
                          limits={"max_queue": 1024, "request_timeout_s": 300.0},
                          logging={"format": "json", "level": "info"})
    daemon = Daemon(work, config)
    phases = set(args.phases.split(","))
    result: dict[str, Any] = {"command": " ".join(sys.argv), "engine_keys": json.loads(args.engine)}

    def save() -> None:
        out.write_text(json.dumps(result, indent=2, default=str))

    try:
        result["cold_start_s"] = daemon.start(args.boot_timeout)
        result["engine_cold"] = daemon.status()["engine"]
        log("cold start", result["cold_start_s"], result["engine_cold"])
        save()
        if "kill" in phases:
            result["kill"] = daemon.worker_back_after_kill(args.boot_timeout)
            log("worker back after SIGKILL", result["kill"]["back_s"])
            save()
        if "bench" in phases:
            bench(daemon, args, result)
            save()
        if "c32" in phases:
            result["saturated_c32"] = asyncio.run(throughput(daemon.socket, 32, args.saturate))
            log("c32", result["saturated_c32"])
            result["engine_after"] = daemon.status()["engine"]
            save()
        if "quality" in phases:
            result["quality"] = quality(daemon, args)
            save()
        if "restart" in phases:
            daemon.stop()
            result["warm_restart_s"] = daemon.start(args.boot_timeout)
            result["engine_warm"] = daemon.status()["engine"]
            log("warm restart", result["warm_restart_s"])
    finally:
        daemon.stop()
        save()
    return 0


def bench(daemon: Daemon, args: argparse.Namespace, result: dict[str, Any]) -> None:
    plan = BenchPlan(nfe_list=tuple(args.nfe), runs=args.runs, concurrency=tuple(args.concurrency),
                     stream_concurrency=tuple(args.stream_concurrency))
    result["bench"] = asyncio.run(run_benchmark(daemon.socket, plan))
    log("bench", json.dumps(result["bench"]["results"]))


def quality(daemon: Daemon, args: argparse.Namespace) -> dict[str, Any]:
    voice = VoiceRef("default", str(find_default_reference()), TRANSCRIPT)
    spec = EngineSpec(model=args.model, cache_dir=str(Path(args.models)), device=args.device,
                      dtype=args.dtype, compile=args.compile)
    found = asyncio.run(run_quality(daemon.socket, spec, voice))
    log("quality", found)
    return found

if __name__ == "__main__":
    sys.exit(main())
