"""Benchmark jobs (R10, R12, R17): history, regression flags, the PNG plot, "not configured"."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs
from test_jobs_support import make_rig

from ishowttsd.fsutil import append_jsonl_bounded, read_jsonl
from ishowttsd.jobs.benchmark import (
    BENCH_HISTORY,
    BENCH_PLOT,
    SWEEP_NFE,
    BenchmarkJob,
    bench_rows,
    target_for,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def row(nfe: int, rtf_mean: float, **extra: Any) -> dict[str, Any]:
    return {"model": "tiny", "device": "cpu", "nfe": nfe, "compiled": False, "rtf_mean": rtf_mean,
            "rtf_p95": rtf_mean * 1.2, "latency_p95_s": rtf_mean * 3, "throughput": 1 / rtf_mean, **extra}


class Bench:
    """A bench_fn that answers with given RTFs per NFE and records how it was called."""

    def __init__(self, rtf_by_nfe: dict[int, float]) -> None:
        self.rtf_by_nfe, self.calls = rtf_by_nfe, []  # type: ignore[var-annotated]

    async def __call__(self, nfe_list: list[int], runs: int) -> dict[str, Any]:
        self.calls.append((list(nfe_list), runs))
        return {"results": [row(nfe, self.rtf_by_nfe.get(nfe, 0.1), runs=runs) for nfe in nfe_list]}


async def test_without_a_bench_function_the_job_is_not_configured(tmp_path: Path) -> None:
    outcome = await BenchmarkJob(make_rig(tmp_path).ctx, asyncio.Lock()).weekly()
    assert outcome.status == "skipped" and outcome.summary.startswith("not configured")


async def test_weekly_appends_history_and_draws_the_plot(tmp_path: Path) -> None:
    bench = Bench({8: 0.1})
    rig = make_rig(tmp_path, bench_fn=bench)
    outcome = await BenchmarkJob(rig.ctx, asyncio.Lock()).weekly()
    assert outcome.status == "ok" and bench.calls == [([8], 5)]
    [stored] = read_jsonl(rig.ctx.log_dir / BENCH_HISTORY)
    assert stored["kind"] == "benchmark" and stored["regression"] is False and stored["runs"] == 5
    assert stored["timestamp_s"] == rig.now[0]
    assert (rig.ctx.log_dir / BENCH_PLOT).read_bytes().startswith(PNG_MAGIC)


async def test_a_regression_against_history_is_flagged_logged_and_shown(tmp_path: Path) -> None:
    rig = make_rig(tmp_path, bench_fn=Bench({8: 0.2}))
    for day in range(4):
        past = {**row(8, 0.1), "timestamp_s": day * 86400.0}
        append_jsonl_bounded(rig.ctx.log_dir / BENCH_HISTORY, past, 100)
    with capture_logs() as logs:
        outcome = await BenchmarkJob(rig.ctx, asyncio.Lock()).weekly()
    assert outcome.status == "flagged" and "rtf_mean 0.2 vs baseline 0.1: 2.00x worse" in outcome.summary
    assert any(entry["event"] == "benchmark_regression" and entry["log_level"] == "error" for entry in logs)
    assert any(entry.startswith("benchmark: regression: nfe 8") for entry in rig.sources.degraded)
    assert read_jsonl(rig.ctx.log_dir / BENCH_HISTORY)[-1]["regression"] is True
    rig.ctx.bench_fn.rtf_by_nfe[8] = 0.1  # type: ignore[union-attr]
    assert (await BenchmarkJob(rig.ctx, asyncio.Lock()).weekly()).status == "ok"
    assert rig.sources.degraded == []


async def test_the_served_nfe_must_meet_the_rtf_target(tmp_path: Path) -> None:
    rig = make_rig(tmp_path, bench_fn=Bench({8: 0.5}), jobs={"rtf_target": 0.3})
    outcome = await BenchmarkJob(rig.ctx, asyncio.Lock()).weekly()
    assert outcome.status == "flagged" and "rtf_mean 0.5 above target 0.3" in outcome.summary


async def test_monthly_sweep_runs_every_nfe_and_only_the_served_one_has_a_target(tmp_path: Path) -> None:
    bench = Bench({8: 0.2, 12: 0.5, 16: 0.7, 32: 1.3})
    rig = make_rig(tmp_path, bench_fn=bench, jobs={"rtf_target": 0.3})
    outcome = await BenchmarkJob(rig.ctx, asyncio.Lock()).sweep()
    assert bench.calls == [(list(SWEEP_NFE), 10)] and outcome.status == "ok"
    assert [r["nfe"] for r in read_jsonl(rig.ctx.log_dir / BENCH_HISTORY)] == list(SWEEP_NFE)


async def test_benchmarks_wait_for_the_shared_engine_lock(tmp_path: Path) -> None:
    bench, lock = Bench({}), asyncio.Lock()
    job = BenchmarkJob(make_rig(tmp_path, bench_fn=bench).ctx, lock)
    async with lock:
        task = asyncio.create_task(job.weekly())
        await asyncio.sleep(0.05)
        assert bench.calls == []
    assert (await task).status == "ok" and len(bench.calls) == 1


def test_bench_rows_name_what_is_missing() -> None:
    with pytest.raises(ValueError, match="lacks latency_p95_s, throughput"):
        bench_rows({"results": [{"model": "m", "device": "d", "nfe": 8, "compiled": False, "rtf_mean": 1,
                                 "rtf_p95": 1}]}, "benchmark", 0.0)
    with pytest.raises(ValueError, match="no 'results' list"):
        bench_rows({}, "benchmark", 0.0)
    assert target_for({"nfe": 32}, 8, 0.3) == float("inf") and target_for({"nfe": 8}, 8, 0.3) == 0.3
