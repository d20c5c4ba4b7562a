#!/usr/bin/env python3
"""End-to-end figures through the real daemon's Unix socket: cold start, warm restart, latency, TTFA,
throughput per concurrency, NFE sweep, quality. Writes one JSON file and the daemon's log.

    python3 scripts/gpu_daemon_bench.py --work /tmp/dbench --models /tmp/models --out $OUT/daemon.json \
        --model random:F5TTS_v1_Base --dtype fp16 --compile --spec '{"max_batch": 32}'
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
    def __init__(self, work: Path, config: Path, overrides: str) -> None:
        self.work, self.config, self.overrides = work, config, overrides
        self.socket = str(work / "ishowttsd.sock")
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float) -> float:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TORCHINDUCTOR", "TRITON_CACHE"))}
        env.update(PYTHONUNBUFFERED="1", ISHOWTTSD_SPEC_OVERRIDES=self.overrides)
        env.pop("NOTIFY_SOCKET", None)
        started = time.monotonic()
        with (self.work / "daemon.log").open("ab") as out:
            self.process = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "daemon_with_spec.py"),
                                             "--config", str(self.config)], stdout=out, stderr=subprocess.STDOUT,
                                            env=env)
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
    parser.add_argument("--spec", default="{}", help="EngineSpec overrides (JSON)")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32])
    parser.add_argument("--stream-concurrency", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--nfe", type=int, nargs="+", default=[8, 12, 16, 32])
    parser.add_argument("--saturate", type=int, default=256, help="requests for the c=32 throughput run")
    parser.add_argument("--skip-quality", action="store_true")
    parser.add_argument("--boot-timeout", type=float, default=400.0)
    return parser.parse_args()


def main() -> int:
    args = parse()
    work, out = Path(args.work), Path(args.out)
    work.mkdir(parents=True, exist_ok=True)
    config = write_config(work, Path(args.models),
                          engine={"model": args.model, "device": args.device, "dtype": args.dtype,
                                  "compile": args.compile, "ping_interval_s": 2.0, "heartbeat_timeout_s": 120.0},
                          gpu={"backend": "none", "lock_clocks": False},
                          limits={"max_queue": 1024, "request_timeout_s": 300.0},
                          logging={"format": "json", "level": "info"})
    daemon = Daemon(work, config, args.spec)
    result: dict[str, Any] = {"command": " ".join(sys.argv), "spec_overrides": json.loads(args.spec)}

    def save() -> None:
        out.write_text(json.dumps(result, indent=2, default=str))

    try:
        result["cold_start_s"] = daemon.start(args.boot_timeout)
        result["engine_cold"] = daemon.status()["engine"]
        log("cold start", result["cold_start_s"], result["engine_cold"])
        save()
        plan = BenchPlan(nfe_list=tuple(args.nfe), runs=args.runs, concurrency=tuple(args.concurrency),
                         stream_concurrency=tuple(args.stream_concurrency))
        result["bench"] = asyncio.run(run_benchmark(daemon.socket, plan))
        log("bench", json.dumps(result["bench"]["results"]))
        save()
        result["saturated_c32"] = asyncio.run(throughput(daemon.socket, 32, args.saturate))
        log("c32", result["saturated_c32"])
        result["engine_after"] = daemon.status()["engine"]
        save()
        if not args.skip_quality:
            voice = VoiceRef("default", str(find_default_reference()), TRANSCRIPT)
            spec = EngineSpec(model=args.model, cache_dir=str(Path(args.models)), device=args.device,
                              dtype=args.dtype, compile=args.compile)
            result["quality"] = asyncio.run(run_quality(daemon.socket, spec, voice))
            log("quality", result["quality"])
            save()
        daemon.stop()
        result["warm_restart_s"] = daemon.start(args.boot_timeout)
        result["engine_warm"] = daemon.status()["engine"]
        log("warm restart", result["warm_restart_s"])
    finally:
        daemon.stop()
        save()
    return 0


if __name__ == "__main__":
    sys.exit(main())
