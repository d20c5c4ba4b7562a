"""The engine worker: a spawned child process that owns torch, f5-tts and the GPU.

Two threads: the pipe reader answers Ping at once (with how long ago the synthesis thread last made
progress, so a hung kernel shows as a stale progress age even though pings are answered) and
queues Jobs; the main thread loads the engine and runs the jobs one at a time.
"""

from __future__ import annotations

import os
import queue
import sys
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

import psutil

from ishowttsd.engine import protocol as p
from ishowttsd.engine.spec import EngineSpec

STOP = object()


class Outbox:
    """Thread-safe sending over the pipe (reader thread and synthesis thread both send)."""

    def __init__(self, conn: Connection) -> None:
        self._conn, self._lock = conn, threading.Lock()

    def send(self, message: object) -> None:
        with self._lock:
            self._conn.send(message)


class WorkerState:
    def __init__(self) -> None:
        self.jobs: queue.Queue[Any] = queue.Queue()
        self.last_progress = time.monotonic()
        self.busy_job = 0
        self.jobs_done = 0
        self.memory: Callable[[], tuple[int, int]] = lambda: (0, 0)
        self.growth: list[bytearray] = []  # fault injection: memory held on purpose

    def progress(self) -> None:
        self.last_progress = time.monotonic()


def pong(state: WorkerState, ping: p.Ping) -> p.Pong:
    allocated, reserved = state.memory()
    return p.Pong(seq=ping.seq, rss_bytes=psutil.Process().memory_info().rss, cuda_allocated_bytes=allocated,
                  cuda_reserved_bytes=reserved, jobs_done=state.jobs_done,
                  busy_job=state.busy_job or (-1 if state.jobs.qsize() else 0),
                  progress_age_s=time.monotonic() - state.last_progress)


def read_pipe(conn: Connection, outbox: Outbox, state: WorkerState) -> None:
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            state.jobs.put(STOP)  # the daemon went away: finish up and exit
            return
        if isinstance(message, p.Ping):
            outbox.send(pong(state, message))
            continue
        if not state.busy_job and state.jobs.empty():
            state.progress()  # an idle worker's clock starts when work arrives
        state.jobs.put(message)


def run_job(engine: Any, job: p.Job, outbox: Outbox, state: WorkerState) -> None:
    from ishowttsd.engine.f5 import BadInput

    state.busy_job, index = job.job_id, 0

    def emit(pcm: bytes) -> None:
        nonlocal index
        outbox.send(p.Chunk(job.job_id, index, pcm))
        index += 1

    try:
        stats = engine.synthesize(job, emit, state.progress)
        outbox.send(p.Done(job.job_id, stats.samples, stats.synth_s, stats.vocoder_s))
    except (BadInput, ValueError, OSError) as exc:
        engine.recover()
        outbox.send(p.Error(job.job_id, "bad_input", str(exc)))
    except Exception as exc:  # noqa: BLE001 - report, keep serving
        engine.recover()
        outbox.send(p.Error(job.job_id, "engine", f"{type(exc).__name__}: {exc}"))
    finally:
        state.busy_job, state.jobs_done = 0, state.jobs_done + 1
        state.progress()


def apply_fault(fault: p.Fault, state: WorkerState) -> None:
    """Test-only faults (the daemon forwards them only with fault_injection = true)."""
    if fault.kind == "hang":
        time.sleep(fault.amount or 3600)
    elif fault.kind == "grow_memory":
        state.growth.append(bytearray(int(fault.amount)))  # bytearray pages are touched: real RSS
    elif fault.kind == "crash":
        os._exit(70)


def boot(spec: EngineSpec, outbox: Outbox, state: WorkerState) -> Any:
    from ishowttsd.engine.f5 import BootError, F5Engine

    started = time.monotonic()
    try:
        engine = F5Engine.load(spec)
        if spec.compile:
            engine.compile()
        warm(engine, spec, state)
    except BootError as exc:
        outbox.send(p.BootFailed(str(exc)))
        sys.exit(p.EXIT_BOOT_FAILURE)
    state.memory = engine.memory
    outbox.send(p.Ready(model=spec.model, device=str(engine.device), dtype=str(engine.dtype).removeprefix("torch."),
                        compiled=engine.compiled, compile_error=engine.compile_error,
                        boot_s=time.monotonic() - started))
    return engine


def warm(engine: Any, spec: EngineSpec, state: WorkerState) -> None:
    """One synthesis before Ready, so the first request pays no lazy-init (or compile) cost."""
    if spec.warmup_voice is None:
        return
    job = p.Job(job_id=0, text="Warm up.", voice=spec.warmup_voice, nfe=spec.nfe, speed=1.0, seed=0)
    try:
        engine.synthesize(job, lambda pcm: None, state.progress)
    except Exception as exc:
        if not engine.compiled:
            raise
        engine.fall_back_to_eager(f"compiled warm-up failed: {type(exc).__name__}: {exc}")
        engine.synthesize(job, lambda pcm: None, state.progress)


def serve(engine: Any, spec: EngineSpec, outbox: Outbox, state: WorkerState) -> None:
    while True:
        message = state.jobs.get()
        if message is STOP or isinstance(message, p.Retire):
            return
        if isinstance(message, p.Job):
            run_job(engine, message, outbox, state)
        elif isinstance(message, p.Fault) and spec.fault_injection:
            apply_fault(message, state)


def worker_main(conn: Connection, spec: EngineSpec) -> None:
    """Entry point of the spawned process."""
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", f"{spec.cache_dir}/inductor")
    outbox, state = Outbox(conn), WorkerState()
    threading.Thread(target=read_pipe, args=(conn, outbox, state), name="pipe-reader", daemon=True).start()
    engine = boot(spec, outbox, state)
    serve(engine, spec, outbox, state)
    sys.exit(0)
