"""Objective quality checks through the daemon (R21, R23): same text, same seed, log-mel distance.

- nfe8_vs_nfe32: the live setting against the slow one, both from the running daemon;
- optimised_vs_eager_fp32: the daemon's output (its dtype, compiled or not, batched) against the
  same job rendered by an eager float32 engine in a child process (same noise).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from ishowttsd.bench.load import open_session
from ishowttsd.bench.melspec import log_mel
from ishowttsd.bench.reference import render_reference
from ishowttsd.decide.quality import log_mel_distance
from ishowttsd.engine import protocol as p
from ishowttsd.engine.spec import EngineSpec

QUALITY_TEXT = "Thanks for the follow, welcome to the stream. Tonight we try the hardest level again."
QUALITY_SEED = 20_240_601


async def fetch_pcm(session: aiohttp.ClientSession, body: dict[str, Any]) -> bytes:
    async with session.post("/v1/tts", json={**body, "format": "pcm"}) as response:
        if response.status != 200:
            raise RuntimeError(f"/v1/tts answered {response.status}: {(await response.text())[:300]}")
        return await response.read()


def distance(a: bytes, b: bytes) -> float:
    return log_mel_distance(log_mel(a), log_mel(b))


async def run_quality(socket_path: str, spec: EngineSpec | None = None, voice: p.VoiceRef | None = None,
                      nfe: int = 8, text: str = QUALITY_TEXT, seed: int = QUALITY_SEED) -> dict[str, Any]:
    """{"comparisons": [{"name", "distance", ...}]}; the fp32 comparison needs `spec` and `voice`."""
    body = {"text": text, "seed": seed, **({"voice": voice.name} if voice else {})}
    async with open_session(socket_path) as session:
        fast = await fetch_pcm(session, {**body, "nfe": nfe})
        slow = await fetch_pcm(session, {**body, "nfe": 32})
    comparisons = [{"name": f"nfe{nfe}_vs_nfe32", "distance": distance(fast, slow), "seed": seed}]
    if spec is not None and voice is not None:
        job = p.Job(0, text, voice, nfe, 1.0, seed)
        reference = await asyncio.to_thread(render_reference, spec, job)
        comparisons.append({"name": "optimised_vs_eager_fp32", "distance": distance(fast, reference),
                            "seed": seed, "dtype": spec.dtype, "compiled": spec.compile})
    return {"comparisons": comparisons}


def make_quality_fn(socket_path: str, spec_fn: Callable[[], EngineSpec] | None = None,
                    voice_fn: Callable[[], p.VoiceRef] | None = None,
                    nfe_fn: Callable[[], int] = lambda: 8) -> Callable[[], Awaitable[dict[str, Any]]]:
    """The scheduled quality job's quality_fn() (spec/voice/nfe read at call time: reloads apply)."""

    async def quality_fn() -> dict[str, Any]:
        return await run_quality(socket_path, spec_fn() if spec_fn else None, voice_fn() if voice_fn else None,
                                 nfe_fn())

    return quality_fn
