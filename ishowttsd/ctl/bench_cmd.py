"""ishowttsctl bench [--quick] [--nfe N ...] [--runs N] [--concurrency C ...] [--json FILE] [--profile].

Drives the running daemon over its socket (ishowttsd.bench) with a progress bar, prints tables
and writes the whole result as JSON. Like jobs_cmd, this module does not import ishowttsd.ctl.cli;
cli.py adds `*bench_cmd.top_level_commands(Command)` to COMMANDS.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from ishowttsd.bench.report import format_table
from ishowttsd.bench.runner import BenchPlan, full_plan, quick_plan, run_benchmark
from ishowttsd.fsutil import atomic_write_text

if TYPE_CHECKING:
    from ishowttsd.ctl.cli import CliContext

C = TypeVar("C")
EXIT_OK, EXIT_ERROR = 0, 1
PROFILE_ROUTE = "/v1/engine/profile"
# R29: mean, median (p50), p95, p99 and std of the latency over the runs; RTF mean and std
SWEEP_COLUMNS = ("nfe", "ok", "latency_mean", "latency_p50", "latency_p95", "latency_p99", "latency_std", "rtf_mean",
                 "rtf_std", "ttfa_p50", "vocoder_s", "throughput")
LOAD_COLUMNS = ("concurrency", "ok", "errors", "latency_p50", "latency_p95", "latency_p99", "ttfa_p50", "ttfa_p95",
                "throughput", "audio_s_per_s")


def plan_from_args(args: argparse.Namespace, default_nfe: int) -> BenchPlan:
    """--quick: 5 runs at one NFE, c 1/4, stream c 1; else the full protocol (R17, R29, R30)."""
    base = quick_plan(default_nfe) if args.quick else full_plan(default_nfe, args.runs or 10)
    overrides: dict[str, Any] = {}
    if args.nfe:
        overrides["nfe_list"] = tuple(args.nfe)
    if args.runs:
        overrides["runs"] = max(5, args.runs)
    if args.concurrency:
        overrides["concurrency"] = tuple(args.concurrency)
    if args.text:
        overrides["text"] = args.text
    return BenchPlan(**{**base.__dict__, **overrides})


def flat(row: Mapping[str, Any]) -> dict[str, Any]:
    """One table row: the summaries' key figures side by side."""
    lat, ttfa, rtf = (row.get(k) or {} for k in ("latency_s", "ttfa_s", "rtf"))
    figures = {f"latency_{key}": lat.get(key) for key in ("mean", "p50", "p95", "p99", "std")}
    return {**row, **figures, "ttfa_p50": ttfa.get("p50"), "ttfa_p95": ttfa.get("p95"),
            "rtf_mean": rtf.get("mean"), "rtf_std": rtf.get("std"),
            "vocoder_s": (row.get("engine") or {}).get("vocoder_s_mean"),
            "errors": sum((row.get("errors") or {}).values())}


def format_result(result: Mapping[str, Any]) -> str:
    engine = result["engine"]
    fallback = f" (eager fallback: {engine['compile_error']})" if engine.get("compile_error") else ""
    head = (f"{engine.get('model')} [{result['label']}] on {engine.get('device')} {engine.get('dtype')}, "
            f"compiled {engine.get('compiled')}{fallback}")
    sweep = format_table([flat(r) for r in result["nfe_sweep"]], SWEEP_COLUMNS)
    parts = [head, "", "NFE sweep (concurrency 1):", sweep]
    for title, key in (("Concurrency:", "concurrency"), ("Streaming (time to first audio):", "streaming")):
        if result.get(key):
            parts += ["", title, format_table([flat(r) for r in result[key]], LOAD_COLUMNS)]
    return "\n".join(parts)


def progress_bar(total: int, enabled: bool) -> tuple[Callable[[], None], Callable[[], None]]:
    """(tick, close) of a tqdm bar on stderr; no-ops when disabled or tqdm is missing."""
    try:
        from tqdm import tqdm
    except ImportError:
        enabled = False
    if not enabled:
        return (lambda: None), (lambda: None)
    bar = tqdm(total=total, unit="req", desc="bench", leave=False)
    return (lambda: bar.update(1)), bar.close


async def default_nfe(ctx: CliContext) -> int:
    async with ctx.client() as daemon:
        status = await daemon.status()
    return int((status.get("engine") or {}).get("nfe") or 8)


async def request_profile(ctx: CliContext, batches: int) -> str:
    async with ctx.client() as daemon:
        reply = await daemon.post_json(PROFILE_ROUTE, {"batches": batches})
    return str(reply.json().get("path", ""))


async def finish_profile(ctx: CliContext, trace: asyncio.Task[str], batches: int, text: str) -> str:
    """The trace's path; if the benchmark ended before the profiled batches ran (its requests batched
    together), one more request per missing batch lets the worker finish the trace."""
    if trace.done():
        return trace.result()
    async with ctx.client() as daemon:
        for _ in range(batches):
            if trace.done():
                break
            await daemon.synthesize({"text": text, "format": "pcm"})
    return await trace


async def run_bench(args: argparse.Namespace, ctx: CliContext) -> int:
    plan = plan_from_args(args, await default_nfe(ctx))
    tick, close = progress_bar(plan.request_count(), not args.no_progress)
    trace = asyncio.create_task(request_profile(ctx, args.profile_batches)) if args.profile else None
    try:
        result = await run_benchmark(ctx.socket, plan, tick)
    finally:
        close()
    if trace is not None:
        result["profile_trace"] = await finish_profile(ctx, trace, args.profile_batches, plan.text)
    print(format_result(result), file=ctx.out)
    if trace is not None:
        print(f"\nprofile trace: {result['profile_trace']}", file=ctx.out)
    if args.json:
        atomic_write_text(args.json, json.dumps(result, indent=2, default=str) + "\n")
        print(f"\nwritten: {args.json}", file=ctx.out)
    bad = [r for r in result["nfe_sweep"] if r["ok"] < r["requests"]]
    return EXIT_ERROR if bad else EXIT_OK


def bench_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="5 runs at the configured NFE, concurrency 1 and 4")
    parser.add_argument("--nfe", type=int, nargs="+", help="NFE values to sweep (default 8 12 16 32)")
    parser.add_argument("--runs", type=int, help="requests per NFE (at least 5; default 10, --quick 5)")
    parser.add_argument("--concurrency", type=int, nargs="+", help="concurrency levels (default 1 2 4 8 16 32)")
    parser.add_argument("--text", help="text to synthesise (default: ~8.4 s of speech)")
    parser.add_argument("--json", help="write the full result as JSON to this file")
    parser.add_argument("--profile", action="store_true", help="also have the worker write a torch profiler trace")
    parser.add_argument("--profile-batches", type=int, default=5, help="batches the trace covers")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def top_level_commands(command: Callable[..., C]) -> tuple[C, ...]:
    """`ishowttsctl bench`, built with cli.Command."""
    return (command("bench", "benchmark the running daemon (RTF, latency, TTFA, throughput, NFE sweep)",
                    run_bench, bench_arguments),)
