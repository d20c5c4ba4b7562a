"""Batching, admission, deadlines and cancellation through the real daemon (tiny model, CPU)."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from daemon_harness import DaemonProcess, Reply, request, start_daemon

SENTENCE = "This sentence is about sixty bytes long, give or take a few. "


def tts(daemon: DaemonProcess, text: str, seed: int, timeout: float = 120.0, **extra: object) -> Reply:
    return request(daemon.socket, "POST", "/v1/tts", {"text": text, "seed": seed, "format": "pcm", **extra},
                   timeout=timeout)


def serves_again(daemon: DaemonProcess, within_s: float = 60.0) -> bool:
    """A short request succeeds once the batch in hand is through (the dropped jobs do not run on)."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if tts(daemon, "Still serving.", seed=1).status == 200:
            return True
    return False


def engine(daemon: DaemonProcess) -> dict[str, object]:
    return daemon.status()["engine"]


def concurrently(daemon: DaemonProcess, texts_seeds: list[tuple[str, int]]) -> list[Reply]:
    with ThreadPoolExecutor(len(texts_seeds)) as pool:
        return list(pool.map(lambda ts: tts(daemon, *ts), texts_seeds))


@pytest.fixture(scope="module")
def batching_daemon(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> Iterator[DaemonProcess]:
    daemon = start_daemon(tmp_path_factory.mktemp("batching"), models_dir)
    yield daemon
    assert daemon.stop() == 0, daemon.log()[-3000:]


def test_concurrent_requests_are_batched_and_match_unbatched_output(batching_daemon: DaemonProcess) -> None:
    alone = tts(batching_daemon, SENTENCE * 2, seed=7)
    assert alone.status == 200, alone.body
    replies = concurrently(batching_daemon, [(SENTENCE * 2, 7)] + [(SENTENCE, s) for s in range(10, 15)])
    assert [r.status for r in replies] == [200] * 6
    sizes = {int(k): v for k, v in engine(batching_daemon)["batch_sizes"].items()}
    assert max(sizes) > 1, sizes
    # Same seed, batched with others (masked padding): the same audio within 2 LSB of 16-bit PCM.
    a, b = (np.frombuffer(r.body, dtype="<i2").astype(np.int32) for r in (alone, replies[0]))
    assert a.shape == b.shape
    assert int(np.abs(a - b).max()) <= 2


def test_worker_counters_reach_status(batching_daemon: DaemonProcess) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not engine(batching_daemon).get("batches_run"):
        time.sleep(0.3)  # counters come with the next pong
    info = engine(batching_daemon)
    assert info["items_run"] >= info["batches_run"] > 0
    assert info["compiles_after_ready"] == 0
    assert info["vocoder_s_total"] > 0 and info["synth_s_total"] > info["vocoder_s_total"]


def test_full_queue_answers_429_with_retry_after(tmp_path: Path, models_dir: Path) -> None:
    daemon = start_daemon(tmp_path, models_dir, limits={"max_queue": 1})
    try:
        replies = concurrently(daemon, [("Hi chat, welcome in.", s) for s in range(24)])  # 16 in flight, 1 waits
    finally:
        daemon.stop()
    refused = [r for r in replies if r.status == 429]
    assert refused and all(r.status in (200, 429) for r in replies)
    assert int(refused[0].headers["retry-after"]) >= 1
    assert json.loads(refused[0].body)["error"]["code"]


def test_stale_request_gets_504_and_is_dropped(tmp_path: Path, models_dir: Path) -> None:
    daemon = start_daemon(tmp_path, models_dir, limits={"request_timeout_s": 1.0})
    try:
        replies = concurrently(daemon, [(SENTENCE * 12, s) for s in range(4)])
        time.sleep(1.5)
        info = engine(daemon)
        assert serves_again(daemon)
    finally:
        daemon.stop()
    assert 504 in [r.status for r in replies], [r.status for r in replies]
    assert json.loads(next(r for r in replies if r.status == 504).body)["error"]["code"]
    assert info["jobs_cancelled"] + (info["jobs_expired"] or 0) >= 1


def test_disconnected_stream_is_cancelled(tmp_path: Path, models_dir: Path) -> None:
    daemon = start_daemon(tmp_path, models_dir)
    try:
        body = json.dumps({"text": SENTENCE * 12, "seed": 3, "format": "pcm", "stream": True}).encode()
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(60)
            sock.connect(daemon.socket)
            sock.sendall(b"POST /v1/tts HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                         b"Content-Length: %d\r\n\r\n" % len(body) + body)
            assert sock.recv(4096).startswith(b"HTTP/1.1 200")  # first audio is out
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not engine(daemon)["worker_jobs_cancelled"]:
            time.sleep(0.2)  # the worker's count comes with its next pong
        info = engine(daemon)
        assert serves_again(daemon)
    finally:
        daemon.stop()
    assert info["jobs_cancelled"] == 1  # the daemon sent a Cancel ...
    assert info["worker_jobs_cancelled"] == 1  # ... and the worker dropped the job before its last chunk
