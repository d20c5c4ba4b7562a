#!/usr/bin/env python3
"""Engine-level GPU figures (no daemon): eager vs compiled latency, batch throughput, tolerances, profile.

Workload (the issue's): F5TTS_v1_Base architecture with random weights, 5.0 s reference + 8.4 s
generated (469 + 787 = 1256 mel frames), cfg 2, sway -1, Euler, same seed everywhere.

    python3 scripts/gpu_engine_bench.py --cache /tmp/models --out results.json [--dtypes fp16 bf16]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from ishowttsd.engine.compiled import compile_engine, compiled_graphs
from ishowttsd.engine.f5 import F5Engine, Shapes
from ishowttsd.engine.protocol import VoiceRef
from ishowttsd.engine.spec import EngineSpec
from ishowttsd.voices import find_default_reference

REF_FRAMES, GEN_FRAMES = 469, 787
TEXT = "The quick brown fox jumps over the lazy dog, and the chat keeps asking for one more."
TRANSCRIPT = "Some call me nature, others call me mother nature."


def log(*args: object) -> None:
    print(f"[{time.strftime('%H:%M:%S')}]", *args, flush=True)


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed(fn: Any, repeats: int) -> tuple[list[float], Any]:
    out = None
    times = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        out = fn()
        sync()
        times.append(time.perf_counter() - start)
    return times, out


def stats(times: list[float]) -> dict[str, float]:
    return {"median_ms": 1000 * statistics.median(times), "min_ms": 1000 * min(times),
            "mean_ms": 1000 * statistics.fmean(times), "n": len(times)}


class Bench:
    def __init__(self, cache: str, results: dict[str, Any], out: Path, model: str, device: str) -> None:
        self.cache, self.results, self.out, self.model, self.device = cache, results, out, model, device
        self.reference_mel: torch.Tensor | None = None
        self.backend = "inductor"
        self.profiling = True
        self.position_conv = "conv1d"  # the eager fp32 reference always runs f5-tts's own conv1d

    def save(self) -> None:
        self.out.write_text(json.dumps(self.results, indent=2, default=str))

    def engine(self, dtype: str, **extra: Any) -> tuple[F5Engine, Any]:
        spec = EngineSpec(model=self.model, cache_dir=self.cache, device=self.device, dtype=dtype,
                          max_batch=32, max_frames=2048, position_conv=self.position_conv, **extra)
        engine = F5Engine.load(spec)
        voice = VoiceRef("default", str(find_default_reference()), TRANSCRIPT)
        ref = engine.reference(voice)
        return engine, replace(ref, mel=ref.mel[:REF_FRAMES])

    def one(self, engine: F5Engine, ref: Any, rows: int = 1, seed: int = 0) -> list[torch.Tensor]:
        generators = [torch.Generator(device=self.device).manual_seed(seed + i) for i in range(rows)]
        mels = engine.sample([ref] * rows, [TEXT] * rows, [REF_FRAMES + GEN_FRAMES] * rows, 8, generators)
        for mel in mels:
            engine.vocode(mel)
        return mels

    def tolerance(self, mel: torch.Tensor) -> dict[str, float]:
        ref = self.reference_mel
        assert ref is not None and torch.isfinite(mel).all()
        return {"rel_l2_vs_eager_fp32": float((mel.float() - ref).norm() / ref.norm()),
                "max_abs_vs_eager_fp32": float((mel.float() - ref).abs().max())}

    def eager(self, dtype: str) -> None:
        engine, ref = self.engine(dtype)
        self.one(engine, ref)
        times, mels = timed(lambda: self.one(engine, ref), 5)
        if dtype == "fp32":
            self.reference_mel = mels[0].float().clone()
        row = {"path": f"eager {dtype} {self.position_conv}", "batch": 1, **stats(times), **self.tolerance(mels[0])}
        vocoder, _ = timed(lambda: engine.vocode(mels[0]), 5)
        row["vocoder_ms"] = 1000 * statistics.median(vocoder)
        self.results["rows"].append(row)
        log(row)
        if dtype != "fp32":
            self.throughput(engine, ref, f"eager {dtype} {self.position_conv}", (32,))
        engine.step = engine.step_eager  # drop references to the compiled graphs before the next engine

    def throughput(self, engine: F5Engine, ref: Any, label: str, batches: tuple[int, ...]) -> None:
        for rows in batches:
            self.one(engine, ref, rows)
            times, _ = timed(lambda rows=rows: self.one(engine, ref, rows), 3)
            median = statistics.median(times)
            row = {"path": label, "batch": rows, "median_ms": 1000 * median, "utterances_per_s": rows / median}
            self.results["rows"].append(row)
            log(row)
            self.save()

    def compiled(self, dtype: str, mode: str, batches: tuple[int, ...], scope: str = "step") -> None:
        engine, ref = self.engine(dtype, compile=True, compile_mode=mode, compile_backend=self.backend,
                                  compile_scope=scope)
        started = time.perf_counter()
        compile_engine(engine, engine.spec)
        engine.shapes = Shapes((1344,), (1, *batches))  # only the bucket this workload needs
        if engine.captured is not None:
            for rows in engine.shapes.rows:
                engine.captured.add(rows, 1344)
        self.one(engine, ref)
        first = time.perf_counter() - started
        graphs = compiled_graphs()
        for _ in range(2):
            self.one(engine, ref)
        times, mels = timed(lambda: self.one(engine, ref), 10)
        mode = mode if scope == "step" else f"{scope} scope"
        row = {"path": f"compiled {dtype} {mode} {self.position_conv}", "batch": 1, **stats(times),
               **self.tolerance(mels[0]),
               "compile_first_call_s": first, "compile_error": engine.compile_error}
        self.results["rows"].append(row)
        log(row)
        self.save()
        self.step_time(engine, ref, dtype, mode)
        self.throughput(engine, ref, f"compiled {dtype} {mode} {self.position_conv}", batches)
        self.results[f"new_graphs_after_warm_{dtype}_{mode}"] = compiled_graphs() - graphs
        if dtype == "fp16" and self.profiling:
            self.profile(engine, ref, scope)
        engine.step, engine.captured = engine.step_eager, None  # drop the graphs

    def step_time(self, engine: F5Engine, ref: Any, dtype: str, mode: str) -> None:
        """Sampling alone (8 steps) and the vocoder alone, to split the latency."""
        generator = torch.Generator(device=self.device)
        sample = lambda: engine.sample([ref], [TEXT], [REF_FRAMES + GEN_FRAMES], 8, [generator.manual_seed(0)])  # noqa: E731
        times, mels = timed(sample, 10)
        vocoder, _ = timed(lambda: engine.vocode(mels[0]), 10)
        row = {"path": f"compiled {dtype} {mode}: sampling only (8 steps)", "batch": 1, **stats(times),
               "vocoder_ms": 1000 * statistics.median(vocoder)}
        self.results["rows"].append(row)
        log(row)

    def profile(self, engine: F5Engine, ref: Any, scope: str) -> None:
        activities = [torch.profiler.ProfilerActivity.CPU]
        if torch.cuda.is_available():
            activities.append(torch.profiler.ProfilerActivity.CUDA)
        with torch.profiler.profile(activities=activities) as prof:
            self.one(engine, ref)
            sync()
        prof.export_chrome_trace(str(self.out.parent / f"trace_compiled_b1_{scope}_{self.position_conv}.json"))
        table = prof.key_averages().table(sort_by="cuda_time_total", row_limit=25)
        (self.out.parent / f"profile_compiled_b1_{scope}_{self.position_conv}.txt").write_text(table)
        log("\n" + table)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cache", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--modes", nargs="+", default=["reduce-overhead"])
    parser.add_argument("--compiled-dtypes", nargs="+", default=["fp16"])
    parser.add_argument("--eager-dtypes", nargs="+", default=["fp32", "fp16", "bf16"])
    parser.add_argument("--model", default="random:F5TTS_v1_Base")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--backend", default="inductor")
    parser.add_argument("--position-convs", nargs="+", default=["conv1d", "gemm"],
                        help="engine.position_conv values to compare side by side (eager fp32 stays conv1d)")
    parser.add_argument("--batches", type=int, nargs="+", default=[8, 16, 32])
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument("--scopes", nargs="+", default=["captured"], help="engine.compile_scope values to compare")
    args = parser.parse_args()
    out = Path(args.out)
    card = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    results: dict[str, Any] = {"card": card, "torch": torch.__version__,
                               "python": sys.version.split()[0], "command": " ".join(sys.argv), "rows": []}
    bench = Bench(args.cache, results, out, args.model, args.device)
    bench.backend = args.backend
    bench.profiling = not args.no_profile
    for dtype in args.eager_dtypes:
        for impl in ["conv1d"] if dtype == "fp32" else args.position_convs:
            bench.position_conv = impl
            bench.eager(dtype)
            bench.save()
    for dtype in args.compiled_dtypes:
        for mode in args.modes:
            for impl in args.position_convs:
                for scope in args.scopes:
                    bench.position_conv = impl
                    bench.compiled(dtype, mode, tuple(args.batches), scope)
                    torch.cuda.empty_cache()
    bench.save()
    return 0


if __name__ == "__main__":
    sys.exit(main())
