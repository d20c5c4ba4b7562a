"""Streamed requests' first audio does not wait behind other streams' later chunks (real daemon, tiny model).

Six long streamed requests arrive one after another, each sent as soon as the previous one hears its
first audio, so every request reaches the worker while a batch of the others' chunks is on the
device. Each batch is slowed by a fault (0.25 s) so that the order, not the CPU's speed, decides.
Earliest need first: the newcomer's first chunk is the next batch, so between a request's send and
its first audio every other request hears at most one more chunk (the batch on the device). The old
order (a job's later chunks keep the job's arrival time, a whole round planned at once) makes it
wait for the others' next chunks too: two or more each.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from daemon_harness import DaemonProcess, request, start_daemon

SENTENCE = "This sentence is about sixty bytes long, give or take a few. "
STREAMS = 6
SLOW_BATCH_S = 0.25
FIRST_AUDIO_TIMEOUT_S = 60.0


@dataclass
class StreamLog:
    """One streamed request as its client saw it: when it was sent and when each HTTP chunk came."""

    sent_s: float = 0.0
    frames_s: list[float] = field(default_factory=list)
    status: str = ""
    first_audio: threading.Event = field(default_factory=threading.Event)
    error: str = ""


def read_until(sock: socket.socket, buffer: bytearray, marker: bytes) -> bytes:
    while marker not in buffer:
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("closed early")
        buffer += data
    head, _, rest = bytes(buffer).partition(marker)
    buffer[:] = rest
    return head


def read_exactly(sock: socket.socket, buffer: bytearray, size: int) -> bytes:
    while len(buffer) < size:
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("closed early")
        buffer += data
    out = bytes(buffer[:size])
    buffer[:] = buffer[size:]
    return out


def read_frames(sock: socket.socket, log: StreamLog) -> None:
    """Parse the chunked body, stamping each HTTP chunk (one engine Chunk each) as it arrives."""
    buffer = bytearray()
    head = read_until(sock, buffer, b"\r\n\r\n")
    log.status = head.split(b"\r\n", 1)[0].decode()
    while size := int(read_until(sock, buffer, b"\r\n").split(b";")[0], 16):
        read_exactly(sock, buffer, size + 2)
        log.frames_s.append(time.monotonic())
        log.first_audio.set()
    read_until(sock, buffer, b"\r\n")


def stream(path: str, text: str, seed: int, log: StreamLog) -> None:
    body = json.dumps({"text": text, "seed": seed, "format": "pcm", "stream": True}).encode()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(120)
            sock.connect(path)
            log.sent_s = time.monotonic()
            sock.sendall(b"POST /v1/tts HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                         b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
            read_frames(sock, log)
    except (OSError, ValueError) as exc:
        log.error = repr(exc)
    finally:
        log.first_audio.set()


def chained_streams(daemon: DaemonProcess, texts: list[str]) -> list[StreamLog]:
    """Start each stream once the previous one has its first audio; wait for all to finish."""
    logs, threads = [StreamLog() for _ in texts], []
    for seed, (text, log) in enumerate(zip(texts, logs, strict=True)):
        threads.append(threading.Thread(target=stream, args=(daemon.socket, text, seed, log)))
        threads[-1].start()
        assert log.first_audio.wait(FIRST_AUDIO_TIMEOUT_S), f"stream {seed}: no first audio"
    for thread in threads:
        thread.join(180)
    return logs


def chunks_heard_meanwhile(logs: list[StreamLog], index: int) -> dict[int, int]:
    """For stream `index`: how many chunks each other stream received between its send and its first audio."""
    since, until = logs[index].sent_s, logs[index].frames_s[0]
    return {other: sum(since < t < until for t in log.frames_s)
            for other, log in enumerate(logs) if other != index}


@pytest.fixture(scope="module")
def slow_daemon(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> Iterator[DaemonProcess]:
    daemon = start_daemon(tmp_path_factory.mktemp("priority"), models_dir, daemon={"fault_injection": True},
                          engine={"model": "tiny", "ping_interval_s": 0.5, "max_batch": 4, "cpu_threads": 1,
                                  "stream_first_chunk_bytes": 60})
    yield daemon
    assert daemon.stop() == 0, daemon.log()[-3000:]


def test_each_new_stream_starts_with_the_next_batch(slow_daemon: DaemonProcess) -> None:
    fault = {"kind": "slow", "amount": SLOW_BATCH_S}
    assert request(slow_daemon.socket, "POST", "/v1/admin/fault", fault).status == 200
    texts = [SENTENCE * 16] * STREAMS  # ~960 bytes: a 60-byte first chunk, then 135-byte chunks
    try:
        logs = chained_streams(slow_daemon, texts)
    finally:
        request(slow_daemon.socket, "POST", "/v1/admin/fault", {"kind": "slow", "amount": 0})
    assert all(log.status.startswith("HTTP/1.1 200") and not log.error for log in logs), logs
    assert all(len(log.frames_s) >= 6 for log in logs), [len(log.frames_s) for log in logs]
    heard = {index: chunks_heard_meanwhile(logs, index) for index in range(1, STREAMS)}
    assert all(count <= 1 for others in heard.values() for count in others.values()), heard
