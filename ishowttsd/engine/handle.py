"""One engine worker process seen from the daemon: start it, talk to it, notice when it ends.

No torch here: the worker is forked from the engine's fork server (engine/start.py), which imported
torch and f5-tts on its own side. Starting never blocks the event loop: the first start waits for
the fork server's imports, so the process is started from a thread. Its messages are read on the
event loop itself (add_reader + a non-blocking frame reader: no thread hop per message, and a
worker stopped mid-message leaves a partial frame, never a blocked loop). When the pipe ends, a
thread reaps the process and reports its exit code on the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import pickle
import signal
import socket
import struct
import threading
import time
from collections.abc import Callable, Mapping
from multiprocessing.connection import Connection
from typing import Any

import structlog

from ishowttsd.engine import protocol as p
from ishowttsd.engine.spec import EngineSpec
from ishowttsd.engine.start import start_method, worker_context
from ishowttsd.engine.worker import worker_main

_ids = itertools.count(1)
log = structlog.get_logger("ishowttsd")

# multiprocessing.Connection framing: a 4-byte big-endian signed length, or -1 and then an 8-byte
# length (bodies over 2 GiB), then the body (a pickle).
SHORT_HEADER = struct.Struct("!i")
LONG_HEADER = struct.Struct("!Q")
LONG_FRAME_MARKER = -1
Stage = tuple[str, int]  # what to read next, and how many bytes of it


def after_short_header(header: bytes | bytearray) -> Stage:
    (size,) = SHORT_HEADER.unpack(header)
    return ("long", LONG_HEADER.size) if size == LONG_FRAME_MARKER else ("body", size)


def after_long_header(header: bytes | bytearray) -> Stage:
    return "body", LONG_HEADER.unpack(header)[0]


def after_body(body: bytes | bytearray) -> Stage:
    return "short", SHORT_HEADER.size


NEXT_STAGE: Mapping[str, Callable[[bytes | bytearray], Stage]] = {
    "short": after_short_header, "long": after_long_header, "body": after_body}


class FrameReader:
    """Connection frames from a stream socket, reading only what has arrived (never blocks)."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._expect(("short", SHORT_HEADER.size))

    def _expect(self, stage: Stage) -> None:
        self._stage, self._buffer, self._filled = stage[0], bytearray(stage[1]), 0

    def read_available(self) -> tuple[list[bytearray], bool]:
        """The frame bodies completed by what has arrived, and whether the stream has ended."""
        bodies: list[bytearray] = []
        while (received := self._receive()) is not None:
            if received == 0:
                return bodies, True
            self._filled += received
            self._advance(bodies)
        return bodies, False

    def _receive(self) -> int | None:
        """Bytes read into the current buffer; 0 at the end of the stream; None when nothing waits."""
        try:
            return self._sock.recv_into(memoryview(self._buffer)[self._filled:], 0, socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return None
        except OSError:  # ECONNRESET: the worker is gone
            return 0

    def _advance(self, bodies: list[bytearray]) -> None:
        while self._filled == len(self._buffer):  # a zero-length body completes without a read
            if self._stage == "body":
                bodies.append(self._buffer)
            self._expect(NEXT_STAGE[self._stage](self._buffer))


class WorkerHandle:
    """A worker process and its pipe. Messages and the exit are delivered on the event loop."""

    def __init__(self, spec: EngineSpec, loop: asyncio.AbstractEventLoop,
                 on_message: Callable[[WorkerHandle, object], None],
                 on_exit: Callable[[WorkerHandle, int | None], None]) -> None:
        self.spec, self.loop = spec, loop
        self.on_message, self.on_exit = on_message, on_exit
        self.serial = next(_ids)
        self.ready: p.Ready | None = None
        self.boot_failure = ""
        self.last_pong: p.Pong | None = None
        self.last_pong_at = time.monotonic()
        self.started_at = time.monotonic()
        self.retiring = False
        self.exited = False
        self.paused_since: float | None = None  # SIGSTOPped (engine/yielding.py) since then
        self.paused_total_s = 0.0
        self._conn: Connection | None = None
        self._reader: socket.socket | None = None  # a duplicate of the pipe's descriptor, read on the loop
        self._frames: FrameReader | None = None
        self._process: Any = None
        self._exit_code: int | None = None  # set by the reaper thread only: nobody else polls the process

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def exitcode(self) -> int | None:
        return self._exit_code

    def start(self) -> None:
        """Start the worker from a thread (BadStartMethod here, at once, for a bad ISHOWTTSD_WORKER_START)."""
        context = worker_context(start_method(os.environ))
        parent, child = context.Pipe(duplex=True)
        self._process = context.Process(target=worker_main, args=(child, self.spec),
                                        name=f"ishowttsd-engine-{self.serial}", daemon=True)
        self._conn = parent
        threading.Thread(target=self._start_process, args=(child,), name=f"engine-{self.serial}-start",
                         daemon=True).start()

    def _start_process(self, child: Connection) -> None:
        """Thread: start the process, then have the loop read its pipe."""
        try:
            self._process.start()
        except Exception as exc:  # the fork server could not start or fork: reported as an exit
            log.error("engine_worker_start_failed", serial=self.serial, error=f"{type(exc).__name__}: {exc}")
            self._deliver(self._exited, None)
            return
        finally:
            child.close()
        self._deliver(self._attach)

    def _attach(self) -> None:
        if self._conn is None or self._conn.closed or self.exited:
            return
        self._reader = socket.socket(fileno=os.dup(self._conn.fileno()))
        self._reader.settimeout(None)  # the descriptor stays blocking for Connection.send (MSG_DONTWAIT reads)
        self._frames = FrameReader(self._reader)
        self.loop.add_reader(self._reader.fileno(), self._on_readable)

    def _on_readable(self) -> None:
        assert self._frames is not None
        bodies, ended = self._frames.read_available()
        for body in bodies:
            self._dispatch(body)
        if ended:
            self._stop_reading()
            threading.Thread(target=self._reap, name=f"engine-{self.serial}-reaper", daemon=True).start()

    def _dispatch(self, body: bytearray) -> None:
        """One message to on_message; a failure there is reported as the loop reports a callback's."""
        try:
            message = pickle.loads(body)
        except Exception as exc:  # framing stays intact: skip the message, keep reading
            log.error("engine_message_undecodable", serial=self.serial, error=f"{type(exc).__name__}: {exc}")
            return
        try:
            self.on_message(self, message)
        except Exception as exc:
            self.loop.call_exception_handler({"message": "engine message handler failed", "exception": exc})

    def _stop_reading(self) -> None:
        if self._reader is not None:
            self.loop.remove_reader(self._reader.fileno())
            self._reader.close()
            self._reader = None

    def _reap(self) -> None:
        """Thread: the pipe has ended; wait for the process and report its exit code on the loop."""
        self._process.join()
        self._exit_code = self._process.exitcode
        self._deliver(self._exited, self._exit_code)

    def _deliver(self, callback: Callable[..., None], *args: object) -> None:
        with contextlib.suppress(RuntimeError):  # loop closed during shutdown
            self.loop.call_soon_threadsafe(callback, *args)

    def _exited(self, code: int | None) -> None:
        self.exited = True
        self._stop_reading()
        if self._conn is not None:
            self._conn.close()
        self.on_exit(self, code)

    def send(self, message: object) -> bool:
        """False when the worker is gone (its exit is reported separately)."""
        if self._conn is None or self.exited:
            return False
        try:
            self._conn.send(message)
            return True
        except (BrokenPipeError, OSError, ValueError):
            return False

    def record_pong(self, pong: p.Pong) -> None:
        self.last_pong, self.last_pong_at = pong, time.monotonic()

    def pause(self) -> None:
        """SIGSTOP the process (a boot yielding to a serving worker); nothing once it has exited."""
        if self.paused_since is None and self._signal(signal.SIGSTOP):
            self.paused_since = time.monotonic()

    def resume(self) -> None:
        if self.paused_since is not None:
            self._signal(signal.SIGCONT)
            now = time.monotonic()
            self.paused_total_s += now - self.paused_since
            self.paused_since = None

    def paused_for(self, now: float) -> float | None:
        return None if self.paused_since is None else now - self.paused_since

    def running_s(self, now: float) -> float:
        """Seconds since start, paused time excluded (what a boot timeout measures)."""
        return now - self.started_at - self.paused_total_s - (self.paused_for(now) or 0.0)

    def _signal(self, signum: int) -> bool:
        pid = self.pid
        if pid is None or self.exited:
            return False
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)
            return True
        return False

    def kill(self) -> None:
        """SIGKILL unless it has exited (no poll here: only the reaper thread reaps the process)."""
        if self._process is not None and self._process.pid is not None and not self.exited:
            self._process.kill()

    async def wait_exit(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while not self.exited and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        return self.exited
