"""Worker boot with compile = true on CPU (tiny model): compiled and warmed, or eager with the reason (R24)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from ishowttsd.engine import protocol as p  # noqa: E402
from ishowttsd.engine import worker  # noqa: E402
from ishowttsd.engine.spec import EngineSpec  # noqa: E402
from ishowttsd.voices import find_default_reference  # noqa: E402

TRANSCRIPT = "Some call me nature, others call me mother nature."
BOOT_LIMIT_S = 240.0


class Sent:
    def __init__(self) -> None:
        self.messages: list[object] = []

    def send(self, message: object) -> None:
        self.messages.append(message)


def spec(tmp_path: Path, **extra: object) -> EngineSpec:
    voice = p.VoiceRef("default", str(find_default_reference()), TRANSCRIPT)
    return EngineSpec(model="tiny", cache_dir=str(tmp_path), device="cpu", compile=True, warmup_voice=voice,
                      max_batch=2, max_frames=1024, min_frames=768, **extra)


def boot(tmp_path: Path, **extra: object) -> tuple[object, p.Ready, float]:
    sent, started = Sent(), time.monotonic()
    engine = worker.boot(spec(tmp_path, **extra), sent, worker.WorkerState())  # type: ignore[arg-type]
    ready = sent.messages[-1]
    assert isinstance(ready, p.Ready)
    return engine, ready, time.monotonic() - started


def test_compiled_boot_warms_every_bucket_and_serves_without_new_graphs(tmp_path: Path) -> None:
    engine, ready, took = boot(tmp_path, compile_backend="eager")
    assert took < BOOT_LIMIT_S
    assert ready.compiled and ready.compile_error == "" and ready.buckets == (768, 1024)
    assert ready.warm_graphs >= 1
    from ishowttsd.engine.compiled import compiled_graphs

    before, pieces = compiled_graphs(), []
    engine.synthesize(p.Job(1, "A second line, not warmed.", engine.spec.warmup_voice, 8, 1.0, 3),
                      pieces.append, lambda: None)
    assert pieces and compiled_graphs() == before


def test_an_unusable_compile_mode_falls_back_to_eager_with_the_reason(tmp_path: Path) -> None:
    _, ready, _ = boot(tmp_path, compile_mode="no-such-mode", compile_scope="step")  # the mode is step's
    assert not ready.compiled and ready.buckets == ()
    assert "torch.compile failed" in ready.compile_error and "no-such-mode" in ready.compile_error


def test_a_compile_failing_during_warm_up_falls_back_to_eager(tmp_path: Path) -> None:
    from torch._dynamo import register_backend

    @register_backend
    def ishowttsd_failing_backend(graph: object, inputs: object) -> object:
        raise RuntimeError("forced compile failure")

    _, ready, _ = boot(tmp_path, compile_backend="ishowttsd_failing_backend")
    assert not ready.compiled
    assert ready.compile_error.startswith("compiled warm-up failed") and "forced compile failure" in ready.compile_error


def test_block_scope_compiles_each_dit_block_and_serves_without_new_graphs(tmp_path: Path) -> None:
    from ishowttsd.engine.compiled import compiled_graphs

    engine, ready, _ = boot(tmp_path, compile_backend="eager", compile_scope="blocks")
    assert ready.compiled and ready.compile_error == ""
    blocks = engine.model.transformer.transformer_blocks
    assert all(block._compiled_call_impl is not None for block in blocks)
    before, pieces = compiled_graphs(), []
    engine.synthesize(p.Job(1, "Another line.", engine.spec.warmup_voice, 8, 1.0, 4), pieces.append, lambda: None)
    assert pieces and compiled_graphs() == before


def test_captured_scope_captures_every_bucket_and_serves_without_new_graphs(tmp_path: Path) -> None:
    from ishowttsd.engine.compiled import compiled_graphs

    engine, ready, _ = boot(tmp_path, compile_backend="eager", compile_scope="captured")
    assert ready.compiled and ready.compile_error == "" and ready.buckets == (768, 1024)
    assert set(engine.captured.buckets) == {(rows, width) for rows in (1, 2) for width in (768, 1024)}
    before, pieces = compiled_graphs(), []
    engine.synthesize(p.Job(1, "A line for the captured engine.", engine.spec.warmup_voice, 8, 1.0, 5),
                      pieces.append, lambda: None)
    assert pieces and compiled_graphs() == before
