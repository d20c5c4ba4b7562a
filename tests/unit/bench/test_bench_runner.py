"""The benchmark against a fake daemon on a Unix socket: plan, load, summaries, vocoder share, quality."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
from aiohttp import web

from ishowttsd.bench.load import check_loopback, open_session, run_load
from ishowttsd.bench.melspec import log_mel, mel_filterbank
from ishowttsd.bench.quality import run_quality
from ishowttsd.bench.report import RANDOM_WEIGHTS_LABEL, engine_delta, format_table, load_row
from ishowttsd.bench.runner import BenchPlan, make_bench_fn, run_benchmark
from ishowttsd.jobs.benchmark import BENCH_FIELDS

RATE = 24_000


def tone(seconds: float, hz: float) -> bytes:
    t = np.arange(int(RATE * seconds)) / RATE
    return (0.3 * np.sin(2 * np.pi * hz * t) * 32767).astype("<i2").tobytes()


class FakeDaemon:
    """/v1/tts answers 0.5 s of a tone after `delay_s` (pitch from nfe); /v1/status counts jobs."""

    def __init__(self, delay_s: float = 0.01, fail_every: int = 0) -> None:
        self.delay_s, self.fail_every, self.jobs, self.bodies = delay_s, fail_every, 0, []

    async def tts(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.bodies.append(body)
        await asyncio.sleep(self.delay_s)
        if self.fail_every and len(self.bodies) % self.fail_every == 0:
            return web.json_response({"error": {"code": "queue_full", "message": "full"}}, status=429)
        self.jobs += 1
        response = web.StreamResponse()
        await response.prepare(request)
        await response.write(tone(0.5, 200 + 10 * int(body.get("nfe", 8))))
        return response

    async def status(self, request: web.Request) -> web.Response:
        return web.json_response({"engine": {
            "model": "random:F5TTS_v1_Base", "random_weights": True, "device": "cuda:0", "dtype": "float16",
            "compiled": True, "nfe": 8, "jobs_finished": self.jobs, "synth_s_total": 0.02 * self.jobs,
            "vocoder_s_total": 0.004 * self.jobs}})


@pytest.fixture
async def fake(tmp_path: Path) -> AsyncIterator[tuple[str, FakeDaemon]]:
    daemon = FakeDaemon()
    app = web.Application()
    app.router.add_post("/v1/tts", daemon.tts)
    app.router.add_get("/v1/status", daemon.status)
    runner = web.AppRunner(app)
    await runner.setup()
    path = str(tmp_path / "fake.sock")
    await web.UnixSite(runner, path).start()
    yield path, daemon
    await runner.cleanup()


async def test_benchmark_rows_carry_what_the_history_needs(fake: tuple[str, FakeDaemon]) -> None:
    socket_path, daemon = fake
    ticks: list[int] = []
    plan = BenchPlan(nfe_list=(8, 32), runs=5, concurrency=(1, 4), stream_concurrency=(2,))
    result = await run_benchmark(socket_path, plan, lambda: ticks.append(1))
    assert len(ticks) == plan.request_count() == len(daemon.bodies)
    assert result["label"] == RANDOM_WEIGHTS_LABEL
    rows = result["results"]
    assert [r["nfe"] for r in rows] == [8, 32] and all(k in rows[0] for k in BENCH_FIELDS)
    assert rows[0]["vocoder_s_mean"] == pytest.approx(0.004) and rows[0]["synth_s_mean"] == pytest.approx(0.02)
    assert rows[0]["rtf_mean"] == pytest.approx(rows[0]["latency_mean_s"] / 0.5, rel=0.05)
    assert [r["concurrency"] for r in result["concurrency"]] == [1, 4]
    assert result["concurrency"][1]["requests"] == 8 and result["streaming"][0]["ttfa_s"]["n"] == 5
    assert {b["nfe"] for b in daemon.bodies} == {8, 32} and all(b["format"] == "pcm" for b in daemon.bodies)


async def test_bench_fn_runs_the_jobs_nfe_list(fake: tuple[str, FakeDaemon]) -> None:
    socket_path, _ = fake
    result = await make_bench_fn(socket_path)([12, 16], 5)
    assert [r["nfe"] for r in result["results"]] == [12, 16]


async def test_load_counts_refusals_and_stops_at_the_time_bound(fake: tuple[str, FakeDaemon]) -> None:
    socket_path, daemon = fake
    daemon.fail_every = 3
    async with open_session(socket_path) as session:
        result = await run_load(session, lambda i: {"text": "x", "seed": i}, 2, 9)
        bounded = await run_load(session, lambda i: {"text": "x", "seed": i}, 1, 1000, max_seconds=0.05)
    row = load_row(result)
    assert row["requests"] == 9 and row["ok"] == 6 and row["errors"] == {"http_429": 3}
    assert 1 <= len(bounded.timings) < 20


async def test_quality_compares_nfe_8_and_32(fake: tuple[str, FakeDaemon]) -> None:
    socket_path, _ = fake
    result = await run_quality(socket_path)
    (comparison,) = result["comparisons"]
    assert comparison["name"] == "nfe8_vs_nfe32" and comparison["distance"] > 0.1  # 280 Hz vs 520 Hz


def test_engine_delta_and_table() -> None:
    before = {"jobs_finished": 2, "synth_s_total": 1.0, "vocoder_s_total": 0.1}
    after = {"jobs_finished": 6, "synth_s_total": 3.0, "vocoder_s_total": 0.5}
    assert engine_delta(before, after) == {"jobs": 4, "synth_s_mean": 0.5, "vocoder_s_mean": 0.1}
    assert engine_delta(after, after)["jobs"] == 0
    table = format_table([{"a": 1.23456, "b": None}], ("a", "b")).splitlines()
    assert table[0].split() == ["a", "b"] and table[1].split() == ["1.235", "-"]


def test_log_mel_finds_the_tone_and_filters_cover_the_band() -> None:
    mel = log_mel(tone(1.0, 1000.0))
    assert mel.shape[0] == 100 and mel.shape[1] == 1 + RATE // 256
    peak = int(np.argmax(mel[:, mel.shape[1] // 2]))
    bank = mel_filterbank()
    centre_hz = np.argmax(bank[peak]) * RATE / 1024
    assert math.isclose(centre_hz, 1000.0, rel_tol=0.15)
    assert (bank.sum(axis=0)[5:-5] > 0).all()


@pytest.mark.parametrize("url", ["http://10.0.0.5:80", "http://example.com", "http://0.0.0.0:1"])
def test_only_loopback_urls_are_allowed(url: str) -> None:
    with pytest.raises(ValueError):
        check_loopback(url)
    assert check_loopback("http://127.0.0.1:8765") and check_loopback("http://[::1]:1")

