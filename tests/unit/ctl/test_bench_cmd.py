"""ishowttsctl bench: argument → plan, the printed tables, JSON output, exit code."""

from __future__ import annotations

import argparse
import asyncio
import io
import json
from pathlib import Path

from ishowttsd.ctl import bench_cmd
from ishowttsd.ctl.cli import COMMANDS, CliContext, build_parser


def args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    bench_cmd.bench_arguments(parser)
    return parser.parse_args(list(argv))


def test_quick_and_full_plans() -> None:
    quick = bench_cmd.plan_from_args(args("--quick"), default_nfe=8)
    assert quick.nfe_list == (8,) and quick.runs == 5 and quick.concurrency == (1, 4)
    full = bench_cmd.plan_from_args(args(), default_nfe=8)
    assert full.nfe_list == (8, 12, 16, 32) and full.runs == 10 and full.concurrency == (1, 2, 4, 8, 16, 32)
    custom = bench_cmd.plan_from_args(args("--nfe", "16", "--runs", "3", "--concurrency", "2"), default_nfe=8)
    assert custom.nfe_list == (16,) and custom.runs == 5 and custom.concurrency == (2,)


def sample_result() -> dict[str, object]:
    summary = {"mean": 0.07, "p50": 0.069, "p95": 0.075, "p99": 0.08, "std": 0.0031}
    row = {"nfe": 8, "concurrency": 1, "requests": 5, "ok": 5, "errors": {}, "latency_s": summary,
           "ttfa_s": summary, "rtf": {"mean": 0.008, "std": 0.0007}, "throughput": 14.0,
           "engine": {"vocoder_s_mean": 0.004}}
    return {"label": "random weights (speed only: the audio is noise)",
            "engine": {"model": "random:F5TTS_v1_Base", "device": "cuda:0", "dtype": "float16", "compiled": False,
                       "compile_error": "BackendCompilerFailed: boom"},
            "nfe_sweep": [row], "concurrency": [row], "streaming": []}


def test_format_result_names_the_weights_and_the_fallback() -> None:
    text = bench_cmd.format_result(sample_result())
    assert "random weights" in text and "eager fallback: BackendCompilerFailed: boom" in text
    assert "NFE sweep" in text and "Concurrency:" in text and "Streaming" not in text
    assert "0.004" in text and "14" in text
    header, values = text.split("NFE sweep (concurrency 1):\n")[1].splitlines()[:2]
    for column, value in (("latency_p50", "0.069"), ("latency_p99", "0.08"), ("latency_std", "0.0031"),
                          ("rtf_std", "0.0007")):  # R29: mean/median/p95/p99/std printed, not only in --json
        assert column in header and value in values, (header, values)


async def test_run_bench_writes_json_and_exits_0(tmp_path: Path, monkeypatch) -> None:
    async def fake_run(socket: str, plan: object, tick: object) -> dict[str, object]:
        return sample_result()

    async def fake_nfe(ctx: object) -> int:
        return 8

    monkeypatch.setattr(bench_cmd, "run_benchmark", fake_run)
    monkeypatch.setattr(bench_cmd, "default_nfe", fake_nfe)
    out = io.StringIO()
    ctx = CliContext("/nonexistent.sock", 5.0, out, io.StringIO(), io.BytesIO())
    code = await bench_cmd.run_bench(args("--quick", "--no-progress", "--json", str(tmp_path / "b.json")), ctx)
    assert code == 0 and json.loads((tmp_path / "b.json").read_text())["nfe_sweep"][0]["nfe"] == 8
    assert "written:" in out.getvalue()


def test_the_command_plugs_into_the_cli_table() -> None:
    commands = COMMANDS  # cli.py includes the bench command
    parsed = build_parser(commands).parse_args(["bench", "--quick", "--json", "x.json"])
    assert parsed.quick and parsed.json == "x.json"


async def test_a_profile_the_benchmark_did_not_finish_gets_one_request_per_missing_batch() -> None:
    """--profile: a benchmark whose requests batched together may end before the profiled batches ran."""
    finished: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    sent: list[object] = []

    class Daemon:
        async def __aenter__(self) -> Daemon:
            return self

        async def __aexit__(self, *exc: object) -> None:
            return None

        async def synthesize(self, body: object) -> None:
            sent.append(body)
            if len(sent) == 2:  # the worker's second batch completes the trace
                finished.set_result("/state/profiles/trace.json")
            await asyncio.sleep(0)

    class Ctx:
        def client(self) -> Daemon:
            return Daemon()

    async def profile_reply() -> str:
        return await finished

    trace = asyncio.create_task(profile_reply())
    path = await bench_cmd.finish_profile(Ctx(), trace, 5, "Hi.")  # type: ignore[arg-type]
    assert path == "/state/profiles/trace.json" and len(sent) == 2
    done = asyncio.create_task(asyncio.sleep(0, result="/already.json"))
    await done
    assert await bench_cmd.finish_profile(Ctx(), done, 5, "Hi.") == "/already.json" and len(sent) == 2  # type: ignore[arg-type]
