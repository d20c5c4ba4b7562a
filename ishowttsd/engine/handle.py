"""One engine worker process seen from the daemon: start it, talk to it, notice when it ends.

No torch here: the worker is forked from the engine's fork server (engine/start.py), which imported
torch and f5-tts on its own side. Starting never blocks the event loop: the first start waits for
the fork server's imports, so the process is started by the handle's reader thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

import structlog

from ishowttsd.engine import protocol as p
from ishowttsd.engine.spec import EngineSpec
from ishowttsd.engine.start import start_method, worker_context
from ishowttsd.engine.worker import worker_main

_ids = itertools.count(1)
log = structlog.get_logger("ishowttsd")


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
        self._conn: Connection | None = None
        self._process: Any = None
        self._exit_code: int | None = None  # set by the reader thread only: nobody else polls the process

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
        threading.Thread(target=self._run, args=(child,), name=f"engine-{self.serial}-reader", daemon=True).start()

    def _run(self, child: Connection) -> None:
        try:
            self._process.start()
        except Exception as exc:  # the fork server could not start or fork: reported as an exit
            log.error("engine_worker_start_failed", serial=self.serial, error=f"{type(exc).__name__}: {exc}")
            self._deliver(self._exited, None)
            return
        finally:
            child.close()
        self._read()

    def _read(self) -> None:
        assert self._conn is not None
        while True:
            try:
                message = self._conn.recv()
            except (EOFError, OSError):
                break
            self._deliver(self.on_message, self, message)
        self._process.join()
        self._exit_code = self._process.exitcode
        self._deliver(self._exited, self._exit_code)

    def _deliver(self, callback: Callable[..., None], *args: object) -> None:
        with contextlib.suppress(RuntimeError):  # loop closed during shutdown
            self.loop.call_soon_threadsafe(callback, *args)

    def _exited(self, code: int | None) -> None:
        self.exited = True
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

    def kill(self) -> None:
        """SIGKILL unless it has exited (no poll here: only the reader thread reaps the process)."""
        if self._process is not None and self._process.pid is not None and not self.exited:
            self._process.kill()

    async def wait_exit(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while not self.exited and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        return self.exited
