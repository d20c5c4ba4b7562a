"""Concurrent synthesis requests over the daemon's Unix socket (or loopback TCP), timed per request.

Each request records its wall time, its time to first audio (first body bytes; the API sends the
status line only with the first audio piece, so this is the audio's arrival), its audio length and
its outcome. Bounded: exactly `requests` requests, at most `concurrency` at a time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp

PCM_BYTES_PER_S = 48_000  # 24 kHz, 16-bit mono
BASE_URL = "http://localhost"


@dataclass(frozen=True)
class RequestTiming:
    ok: bool
    status: int
    latency_s: float
    ttfa_s: float
    audio_s: float
    error: str = ""


@dataclass
class LoadResult:
    concurrency: int
    wall_s: float = 0.0
    timings: list[RequestTiming] = field(default_factory=list)

    @property
    def ok(self) -> list[RequestTiming]:
        return [t for t in self.timings if t.ok]

    @property
    def errors(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for t in self.timings:
            if not t.ok:
                counts[t.error or str(t.status)] = counts.get(t.error or str(t.status), 0) + 1
        return counts


def open_session(socket_path: str = "", url: str = "", timeout_s: float = 300.0,
                 token: str = "") -> aiohttp.ClientSession:
    """A session to the daemon: its Unix socket, or a loopback `url` (http://127.0.0.1:PORT)."""
    connector = aiohttp.UnixConnector(path=socket_path) if socket_path else aiohttp.TCPConnector()
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return aiohttp.ClientSession(url or BASE_URL, connector=connector, headers=headers,
                                 timeout=aiohttp.ClientTimeout(total=timeout_s))


async def timed_request(session: aiohttp.ClientSession, body: Mapping[str, Any]) -> RequestTiming:
    """POST /v1/tts with raw PCM; read the body as it comes."""
    started = time.perf_counter()
    first, size = 0.0, 0
    try:
        async with session.post("/v1/tts", json={**body, "format": "pcm"}) as response:
            async for piece in response.content.iter_any():
                first = first or time.perf_counter()
                size += len(piece)
            status = response.status
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
        return RequestTiming(False, 0, time.perf_counter() - started, 0.0, 0.0, type(exc).__name__)
    end = time.perf_counter()
    ok = status == 200
    return RequestTiming(ok, status, end - started, (first or end) - started,
                         size / PCM_BYTES_PER_S if ok else 0.0, "" if ok else f"http_{status}")


async def run_load(session: aiohttp.ClientSession, make_body: Callable[[int], Mapping[str, Any]],
                   concurrency: int, requests: int, on_done: Callable[[], None] = lambda: None,
                   max_seconds: float = float("inf")) -> LoadResult:
    """`requests` requests (body i = make_body(i)), `concurrency` at a time; none starts after max_seconds."""
    result = LoadResult(concurrency)
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(requests):
        queue.put_nowait(i)

    stop_at = time.perf_counter() + max_seconds

    async def client() -> None:
        while not queue.empty() and time.perf_counter() < stop_at:
            timing = await timed_request(session, make_body(queue.get_nowait()))
            result.timings.append(timing)
            on_done()

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(max(1, min(concurrency, requests)))))
    result.wall_s = time.perf_counter() - started
    return result


LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})


def check_loopback(url: str) -> str:
    """`url` unchanged when it names a loopback host; ValueError otherwise (load tools never leave the box)."""
    from urllib.parse import urlsplit

    host = urlsplit(url).hostname or ""
    if host not in LOOPBACK_HOSTS:
        raise ValueError(f"only loopback URLs are allowed (127.0.0.1, [::1], localhost), got {url!r}")
    return url
