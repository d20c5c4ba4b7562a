"""engine/handle.py: the pipe read on the event loop (FrameReader) and WorkerHandle's life cycle.

Workers here are plain functions in a forked child (no torch, no fork server): the handle's start,
reading, exit reporting and kill are the real code.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import pickle
import signal
import socket
import time
from collections.abc import Iterator
from multiprocessing.connection import Connection
from typing import Any

import pytest

from ishowttsd.engine import handle as handle_module
from ishowttsd.engine.handle import (
    LONG_HEADER,
    SHORT_HEADER,
    FrameReader,
    WorkerHandle,
    after_long_header,
    after_short_header,
)
from ishowttsd.engine.spec import EngineSpec

BIG = b"x" * 200_000  # over Connection's 16 KiB threshold: header and body are sent separately


@pytest.fixture
def pipe() -> Iterator[tuple[FrameReader, Connection, socket.socket]]:
    ours, theirs = socket.socketpair()
    writer = Connection(os.dup(theirs.fileno()))
    theirs.close()
    yield FrameReader(ours), writer, ours
    writer.close()
    ours.close()


def decoded(bodies: list[bytearray]) -> list[Any]:
    return [pickle.loads(body) for body in bodies]


def test_short_header_gives_the_body_size_or_asks_for_the_long_header() -> None:
    assert after_short_header(SHORT_HEADER.pack(123)) == ("body", 123)
    assert after_short_header(SHORT_HEADER.pack(-1)) == ("long", 8)
    assert after_long_header(LONG_HEADER.pack(2**33)) == ("body", 2**33)


def test_reads_every_waiting_message_in_order(pipe: tuple[FrameReader, Connection, socket.socket]) -> None:
    frames, writer, _ = pipe
    for message in ("ready", BIG, {"done": 1}):
        writer.send(message)
    bodies, ended = frames.read_available()
    assert decoded(bodies) == ["ready", BIG, {"done": 1}] and not ended


def test_nothing_waiting_returns_at_once(pipe: tuple[FrameReader, Connection, socket.socket]) -> None:
    frames, _, _ = pipe
    started = time.monotonic()
    assert frames.read_available() == ([], False)
    assert time.monotonic() - started < 0.5


def test_a_partial_frame_waits_for_its_rest(pipe: tuple[FrameReader, Connection, socket.socket]) -> None:
    frames, writer, _ = pipe
    frame = SHORT_HEADER.pack(len(payload := pickle.dumps(BIG))) + payload
    for cut in (2, 1000):  # inside the header, then inside the body
        writer.send_bytes(b"")  # a zero-length body is a frame too
        os.write(writer.fileno(), frame[:cut])
        assert frames.read_available() == ([bytearray()], False)
        os.write(writer.fileno(), frame[cut:])
        assert decoded(frames.read_available()[0]) == [BIG]


def test_long_frames_are_read(pipe: tuple[FrameReader, Connection, socket.socket]) -> None:
    frames, writer, _ = pipe
    payload = pickle.dumps("long")
    os.write(writer.fileno(), SHORT_HEADER.pack(-1) + LONG_HEADER.pack(len(payload)) + payload)
    assert decoded(frames.read_available()[0]) == ["long"]


def test_end_of_stream_after_the_last_messages(pipe: tuple[FrameReader, Connection, socket.socket]) -> None:
    frames, writer, _ = pipe
    writer.send("last")
    os.write(writer.fileno(), SHORT_HEADER.pack(50) + b"cut off")
    writer.close()
    bodies, ended = frames.read_available()
    assert decoded(bodies) == ["last"] and ended


def test_the_descriptor_stays_blocking_for_sends(pipe: tuple[FrameReader, Connection, socket.socket]) -> None:
    frames, _, ours = pipe
    frames.read_available()
    assert os.get_blocking(ours.fileno())


# ---- WorkerHandle with forked function workers --------------------------------------------------

def chatty_worker(conn: Connection, spec: EngineSpec) -> None:
    conn.send("hello")
    conn.send(conn.recv())  # echo what the daemon sent
    conn.send(BIG)
    conn.close()
    os._exit(7)


def stalled_worker(conn: Connection, spec: EngineSpec) -> None:
    conn.send("before")
    os.write(conn.fileno(), SHORT_HEADER.pack(1000) + b"half a message")
    time.sleep(60)


class Recorder:
    def __init__(self) -> None:
        self.messages: list[object] = []
        self.exits: list[int | None] = []
        self.exited = asyncio.Event()

    def on_message(self, handle: WorkerHandle, message: object) -> None:
        self.messages.append(message)

    def on_exit(self, handle: WorkerHandle, code: int | None) -> None:
        self.exits.append(code)
        self.exited.set()

    async def until(self, count: int, timeout_s: float = 10.0) -> None:
        deadline = time.monotonic() + timeout_s
        while len(self.messages) < count and time.monotonic() < deadline:
            await asyncio.sleep(0.01)


def forked_handle(monkeypatch: pytest.MonkeyPatch, target: Any, recorder: Recorder) -> WorkerHandle:
    monkeypatch.setattr(handle_module, "worker_context", lambda method: multiprocessing.get_context("fork"))
    monkeypatch.setattr(handle_module, "worker_main", target)
    handle = WorkerHandle(EngineSpec(model="tiny", cache_dir="unused", device="cpu"), asyncio.get_running_loop(),
                          recorder.on_message, recorder.on_exit)
    handle.start()
    return handle


async def test_messages_then_the_exit_code(monkeypatch: pytest.MonkeyPatch) -> None:
    recorder = Recorder()
    handle = forked_handle(monkeypatch, chatty_worker, recorder)
    await recorder.until(1)
    assert handle.send({"echo": 1})
    await asyncio.wait_for(recorder.exited.wait(), 10)
    assert recorder.messages == ["hello", {"echo": 1}, BIG]
    assert recorder.exits == [7] and handle.exitcode == 7 and handle.exited
    assert not handle.send("late") and await handle.wait_exit(0.1)


async def test_a_worker_stopped_mid_message_never_blocks_the_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    recorder = Recorder()
    handle = forked_handle(monkeypatch, stalled_worker, recorder)
    await recorder.until(1)
    ticks = 0
    for _ in range(20):  # the loop keeps running while half a message waits in the pipe
        await asyncio.sleep(0.005)
        ticks += 1
    assert ticks == 20 and recorder.messages == ["before"] and not handle.exited
    handle.kill()
    assert await handle.wait_exit(10)
    assert recorder.exits == [-signal.SIGKILL] and recorder.messages == ["before"]


async def test_a_failing_handler_does_not_lose_the_next_messages(monkeypatch: pytest.MonkeyPatch) -> None:
    recorder, reported = Recorder(), []
    asyncio.get_running_loop().set_exception_handler(lambda loop, context: reported.append(context))

    record = recorder.on_message

    def fail_on_hello(handle: WorkerHandle, message: object) -> None:
        record(handle, message)
        if message == "hello":
            handle.send("echo me")
            raise RuntimeError("handler bug")

    recorder.on_message = fail_on_hello  # type: ignore[method-assign]
    forked_handle(monkeypatch, chatty_worker, recorder)
    await asyncio.wait_for(recorder.exited.wait(), 10)
    assert recorder.messages == ["hello", "echo me", BIG]
    assert [str(context["exception"]) for context in reported] == ["handler bug"]


class FailingProcess:
    pid = None

    def __init__(self, **kwargs: object) -> None:
        pass

    def start(self) -> None:
        raise OSError("fork server gone")


async def test_a_failed_start_is_reported_as_an_exit(monkeypatch: pytest.MonkeyPatch) -> None:
    context = multiprocessing.get_context("fork")
    monkeypatch.setattr(handle_module, "worker_context", lambda method: context)
    monkeypatch.setattr(context, "Process", FailingProcess)
    recorder = Recorder()
    handle = WorkerHandle(EngineSpec(model="tiny", cache_dir="unused", device="cpu"), asyncio.get_running_loop(),
                          recorder.on_message, recorder.on_exit)
    handle.start()
    await asyncio.wait_for(recorder.exited.wait(), 10)
    assert recorder.exits == [None] and handle.exited and handle.pid is None
    handle.kill()  # nothing to kill: no error
