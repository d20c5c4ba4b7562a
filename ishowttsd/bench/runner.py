"""`ishowttsctl bench` and the scheduled benchmark: drive the running daemon, summarise (R10, R11, R17, R29, R30).

Every figure is end to end through the socket: per NFE, `runs` sequential requests (latency, RTF,
TTFA, throughput at concurrency 1); optional concurrency levels (throughput, latency under load);
optional streamed runs (time to first audio). Vocoder and engine compute time come from the
daemon's own per-job totals (/v1/status engine.vocoder_s_total, synth_s_total).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import aiohttp

from ishowttsd.bench.load import LoadResult, open_session, run_load
from ishowttsd.bench.report import RANDOM_WEIGHTS_LABEL, engine_delta, history_row, load_row

# With the default voice (5.3 s reference, 52 bytes of transcript) this is ~8.4 s of speech, one chunk.
WORKLOAD_TEXT = "The quick brown fox jumps over the lazy dog, and the chat keeps asking for one more."
STREAM_CONCURRENCY = (1, 16)
FULL_CONCURRENCY = (1, 2, 4, 8, 16, 32)
SWEEP_NFE = (8, 12, 16, 32)


@dataclass(frozen=True)
class BenchPlan:
    nfe_list: tuple[int, ...] = (8,)
    runs: int = 5
    concurrency: tuple[int, ...] = ()
    stream_concurrency: tuple[int, ...] = ()
    text: str = WORKLOAD_TEXT
    voice: str | None = None
    seed: int = 1234

    def body(self, nfe: int, stream: bool = False) -> Callable[[int], dict[str, Any]]:
        base: dict[str, Any] = {"text": self.text, "nfe": nfe, "stream": stream}
        if self.voice:
            base["voice"] = self.voice
        return lambda i: {**base, "seed": self.seed + i}

    def request_count(self) -> int:
        loads = [self.runs] * len(self.nfe_list) + [max(self.runs, 2 * c) for c in self.concurrency]
        return sum(loads) + sum(max(self.runs, 2 * c) for c in self.stream_concurrency) + 1


def quick_plan(nfe: int) -> BenchPlan:
    return BenchPlan(nfe_list=(nfe,), runs=5, concurrency=(1, 4), stream_concurrency=(1,))


def full_plan(nfe: int, runs: int = 10) -> BenchPlan:
    return BenchPlan(nfe_list=SWEEP_NFE if nfe in SWEEP_NFE else (nfe, *SWEEP_NFE), runs=runs,
                     concurrency=FULL_CONCURRENCY, stream_concurrency=STREAM_CONCURRENCY)


class BenchSession:
    """One benchmark's connection and progress callback."""

    def __init__(self, session: aiohttp.ClientSession, tick: Callable[[], None]) -> None:
        self.session, self.tick = session, tick

    async def engine(self) -> dict[str, Any]:
        async with self.session.get("/v1/status") as response:
            response.raise_for_status()
            return dict((await response.json())["engine"])

    async def load(self, make_body: Callable[[int], dict[str, Any]], concurrency: int, count: int) -> LoadResult:
        return await run_load(self.session, make_body, concurrency, count, self.tick)

    async def measured(self, make_body: Callable[[int], dict[str, Any]], concurrency: int,
                       count: int) -> tuple[dict[str, Any], dict[str, float]]:
        before = await self.engine()
        row = load_row(await self.load(make_body, concurrency, count))
        return row, engine_delta(before, await self.engine())


async def run_benchmark(socket_path: str, plan: BenchPlan, progress: Callable[[], None] = lambda: None,
                        url: str = "", token: str = "") -> dict[str, Any]:
    """Run `plan` against the daemon; returns {"label", "engine", "results", "nfe_sweep", "concurrency", ...}."""
    async with open_session(socket_path, url, token=token) as session:
        bench = BenchSession(session, progress)
        engine = await bench.engine()
        default_nfe = plan.nfe_list[0]
        await bench.load(plan.body(default_nfe), 1, 1)  # warm-up, not counted
        sweep = [await _nfe_row(bench, plan, nfe) for nfe in plan.nfe_list]
        loaded = [(await bench.measured(plan.body(default_nfe), c, max(plan.runs, 2 * c)))[0]
                  for c in plan.concurrency]
        streamed = [(await bench.measured(plan.body(default_nfe, stream=True), c, max(plan.runs, 2 * c)))[0]
                    for c in plan.stream_concurrency]
    busiest = max(loaded, key=lambda r: r["throughput"], default=None)
    results = [history_row(engine, row["nfe"], row, busiest if row["nfe"] == default_nfe else None,
                           row["engine"]) for row in sweep]
    return {"label": RANDOM_WEIGHTS_LABEL if engine.get("random_weights") else "real weights",
            "engine": _engine_summary(engine), "plan": _plan_dict(plan), "results": results,
            "nfe_sweep": sweep, "concurrency": loaded, "streaming": streamed}


async def _nfe_row(bench: BenchSession, plan: BenchPlan, nfe: int) -> dict[str, Any]:
    row, delta = await bench.measured(plan.body(nfe), 1, plan.runs)
    return {"nfe": nfe, **row, "engine": delta}


def _engine_summary(engine: dict[str, Any]) -> dict[str, Any]:
    keys = ("model", "random_weights", "device", "dtype", "compiled", "compile_error", "buckets", "max_batch",
            "boot_s", "warm_s")
    return {key: engine.get(key) for key in keys}


def _plan_dict(plan: BenchPlan) -> dict[str, Any]:
    return {"nfe_list": list(plan.nfe_list), "runs": plan.runs, "concurrency": list(plan.concurrency),
            "stream_concurrency": list(plan.stream_concurrency), "text_bytes": len(plan.text.encode())}


def make_bench_fn(socket_path: str, plan: BenchPlan | None = None,
                  concurrency: Sequence[int] = ()) -> Callable[[list[int], int], Awaitable[dict[str, Any]]]:
    """The scheduled jobs' bench_fn(nfe_list, runs) -> {"results": [row per NFE], ...}."""
    base = plan or BenchPlan(concurrency=tuple(concurrency))

    async def bench_fn(nfe_list: list[int], runs: int) -> dict[str, Any]:
        return await run_benchmark(socket_path, replace(base, nfe_list=tuple(nfe_list), runs=runs))

    return bench_fn
