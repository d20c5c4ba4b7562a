"""Benchmarks (R10, R12, R17): weekly at the configured NFE, monthly NFE sweep 8/12/16/32.

The measuring is `ctx.bench_fn(nfe_list, runs)` (ishowttsd.bench, wired by the daemon). It returns
{"results": [row, ...]}, one row per NFE, each with at least the BENCH_FIELDS below (more keys,
e.g. rtf std/p99 or vocoder seconds, are kept in the history as they come). This module appends
the rows to log_dir/bench_history.jsonl, checks each against the RTF target (only the configured
NFE has to meet it) and its own history (decide.regression), flags regressions (log error,
ishowttsd_job_runs_total{result="flagged"}, STATUS= degraded) and redraws bench_history.png.
Benchmarks and the quality job share one lock: they never load the engine at the same time.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from ishowttsd.decide.regression import RegressionReport, check_benchmark
from ishowttsd.fsutil import append_jsonl_line, atomic_write_bytes, read_jsonl
from ishowttsd.jobs.bench_plot import render_history_png
from ishowttsd.jobs.context import JobContext, JobOutcome, set_degraded

log = structlog.get_logger(__name__)
BENCH_HISTORY = "bench_history.jsonl"
BENCH_PLOT = "bench_history.png"
BENCH_FIELDS = ("model", "device", "nfe", "compiled", "rtf_mean", "rtf_p95", "latency_p95_s", "throughput")
SWEEP_NFE = (8, 12, 16, 32)
WEEKLY_RUNS = 5  # R29: at least 5 runs
SWEEP_RUNS = 10  # the guide's "extended benchmarks (10+ runs)"
NOT_CONFIGURED = "not configured: no benchmark function wired into the daemon"


def bench_rows(result: Mapping[str, Any], kind: str, now_s: float) -> list[dict[str, Any]]:
    """The rows of a bench_fn result, stamped; ValueError naming what is missing."""
    rows = result.get("results")
    if not isinstance(rows, list) or not rows:
        raise ValueError(f"bench_fn result has no 'results' list: keys {sorted(result)}")
    stamped = []
    for row in rows:
        missing = [key for key in BENCH_FIELDS if key not in row]
        if missing:
            raise ValueError(f"bench_fn result row lacks {', '.join(missing)}")
        stamped.append({**row, "kind": kind, "timestamp_s": round(now_s, 3)})
    return stamped


def target_for(row: Mapping[str, Any], engine_nfe: int, rtf_target: float) -> float:
    """Only the NFE the daemon serves with must meet the RTF target (NFE 32 never will on a Jetson)."""
    return rtf_target if int(row["nfe"]) == engine_nfe else math.inf


@dataclass(frozen=True)
class Verdict:
    row: dict[str, Any]
    report: RegressionReport


def judge(rows: Sequence[dict[str, Any]], history: Sequence[Mapping[str, Any]], engine_nfe: int,
          rtf_target: float) -> list[Verdict]:
    """Each new row against the target and the history that came before this run (pure)."""
    verdicts = []
    for row in rows:
        report = check_benchmark(row, history, target_for(row, engine_nfe, rtf_target))
        judged = {**row, "regression": report.regressed, "regression_messages": report.messages}
        verdicts.append(Verdict(judged, report))
    return verdicts


class BenchmarkJob:
    def __init__(self, ctx: JobContext, engine_lock: asyncio.Lock) -> None:
        self.ctx, self.engine_lock = ctx, engine_lock

    @property
    def history_path(self) -> Path:
        return self.ctx.log_dir / BENCH_HISTORY

    async def weekly(self) -> JobOutcome:
        return await self._run([self.ctx.get_config().engine.nfe], WEEKLY_RUNS, "benchmark")

    async def sweep(self) -> JobOutcome:
        return await self._run(list(SWEEP_NFE), SWEEP_RUNS, "nfe_sweep")

    async def _run(self, nfe_list: list[int], runs: int, kind: str) -> JobOutcome:
        if self.ctx.bench_fn is None:
            return JobOutcome("skipped", NOT_CONFIGURED)
        async with self.engine_lock:
            result = await self.ctx.bench_fn(nfe_list, runs)
        cfg = self.ctx.get_config()
        rows = bench_rows(result, kind, self.ctx.clock())
        verdicts, plot = await asyncio.to_thread(self._record, rows, cfg.engine.nfe, cfg.jobs.rtf_target)
        return self._outcome(kind, verdicts, plot)

    def _record(self, rows: list[dict[str, Any]], engine_nfe: int,
                target: float) -> tuple[list[Verdict], str]:
        """Judge, append to the history and redraw the plot (runs in a worker thread)."""
        history = read_jsonl(self.history_path)
        verdicts = judge(rows, history, engine_nfe, target)
        for verdict in verdicts:
            append_jsonl_line(self.history_path, verdict.row)
        return verdicts, self._plot([*history, *(v.row for v in verdicts)], target)

    def _plot(self, history: list[Mapping[str, Any]], target: float) -> str:
        png = render_history_png(history, target)
        if png is None:
            return "plot skipped: matplotlib not installed (pip install 'ishowttsd[plot]')"
        atomic_write_bytes(self.ctx.log_dir / BENCH_PLOT, png)
        return str(self.ctx.log_dir / BENCH_PLOT)

    def _outcome(self, kind: str, verdicts: list[Verdict], plot: str) -> JobOutcome:
        details = {"results": [v.row for v in verdicts], "plot": plot}
        bad = [v for v in verdicts if v.report.regressed]
        problems = [f"nfe {v.row['nfe']}: " + "; ".join(v.report.messages) for v in bad]
        set_degraded(self.ctx.status_sources, kind, f"regression: {problems[0]}" if problems else None)
        for verdict in bad:
            log.error("benchmark_regression", kind=kind, nfe=verdict.row["nfe"],
                      messages=verdict.report.messages)
        if problems:
            return JobOutcome("flagged", "regression: " + " | ".join(problems), details)
        means = ", ".join(f"nfe {v.row['nfe']} rtf {float(v.row['rtf_mean']):.3f}" for v in verdicts)
        log.info("benchmark_done", kind=kind, results=means)
        return JobOutcome("ok", means, details)
