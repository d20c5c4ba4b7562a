"""Render one job with the eager fp32 engine in a spawned process: the reference the optimised path
is compared with (R21, R23). The daemon's process never imports torch; the child does."""

from __future__ import annotations

import multiprocessing
from dataclasses import replace
from multiprocessing.connection import Connection

from ishowttsd.engine import protocol as p
from ishowttsd.engine.spec import EngineSpec


def reference_spec(spec: EngineSpec) -> EngineSpec:
    """The same model on the same device, eager, float32, no warm-up."""
    return replace(spec, dtype="fp32", compile=False, warmup_voice=None)


def _render(conn: Connection, spec: EngineSpec, job: p.Job) -> None:
    try:
        from ishowttsd.engine.f5 import F5Engine

        pieces: list[bytes] = []
        F5Engine.load(spec).synthesize(job, pieces.append, lambda: None)
        conn.send(b"".join(pieces))
    except Exception as exc:
        conn.send(f"{type(exc).__name__}: {exc}")
    finally:
        conn.close()


def render_reference(spec: EngineSpec, job: p.Job, timeout_s: float = 900.0) -> bytes:
    """PCM of `job` rendered by reference_spec(spec) in a child process; RuntimeError on failure."""
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe(duplex=False)
    process = context.Process(target=_render, args=(child, reference_spec(spec), job), daemon=True)
    process.start()
    child.close()
    try:
        if not parent.poll(timeout_s):
            raise RuntimeError(f"reference render took more than {timeout_s:.0f}s")
        answer = parent.recv()
    finally:
        process.kill() if process.is_alive() else None
        process.join(5)
    if isinstance(answer, str):
        raise RuntimeError(f"reference render failed: {answer}")
    return answer
