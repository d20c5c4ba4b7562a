"""The engine worker: a spawned child process that owns torch, f5-tts and the GPU.

Two threads: the pipe reader answers Ping at once (with how long ago the synthesis thread last made
progress, so a hung kernel shows as a stale progress age even though pings are answered), notes
Cancels and queues everything else; the main thread loads and warms the engine, then serves: it
collects the jobs that arrive within a short window and runs them in batches (engine/scheduler.py).
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
from ishowttsd.engine.injected import compile_spec, slow_down
from ishowttsd.engine.spec import EngineSpec

STOP = object()


def cache_environment(cache_dir: str) -> dict[str, str]:
    """Compile caches under the state dir, so a restart reuses the last boot's compiled kernels."""
    root = f"{cache_dir}/compile"
    return {"TORCHINDUCTOR_CACHE_DIR": f"{root}/inductor", "TRITON_CACHE_DIR": f"{root}/triton",
            "TORCHINDUCTOR_FX_GRAPH_CACHE": "1", "TORCHINDUCTOR_AUTOGRAD_CACHE": "1"}


class Outbox:
    """Thread-safe sending over the pipe (reader thread and synthesis thread both send)."""

    def __init__(self, conn: Connection) -> None:
        self._conn, self._lock = conn, threading.Lock()

    def send(self, message: object) -> None:
        with self._lock:
            self._conn.send(message)


class WorkerState:
    def __init__(self) -> None:
        self.jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()  # C: a cheaper hand-over than Queue
        self.last_progress = time.monotonic()
        self.jobs_done = 0
        self.memory: Callable[[], tuple[int, int]] = lambda: (0, 0)
        self.scheduler: Any = None  # set once serving
        self.compiles: Callable[[], int] = lambda: 0  # graphs compiled since Ready
        self.cancelled: set[int] = set()
        self.lock = threading.Lock()
        self.growth: list[bytearray] = []  # fault injection: memory held on purpose

    def progress(self) -> None:
        self.last_progress = time.monotonic()

    def take_cancelled(self) -> set[int]:
        with self.lock:
            taken, self.cancelled = self.cancelled, set()
        return taken

    def busy_job(self) -> int:
        """Job id on the device; -1 = work in hand but none running; 0 = idle."""
        scheduler = self.scheduler
        if scheduler is not None and scheduler.running:
            return int(scheduler.running[0])
        in_hand = scheduler is not None and bool(scheduler.active)
        return -1 if in_hand or self.jobs.qsize() else 0


def pong(state: WorkerState, ping: p.Ping) -> p.Pong:
    allocated, reserved = state.memory()
    counters = state.scheduler.counters if state.scheduler is not None else None
    return p.Pong(seq=ping.seq, rss_bytes=psutil.Process().memory_info().rss, cuda_allocated_bytes=allocated,
                  cuda_reserved_bytes=reserved, jobs_done=state.jobs_done, busy_job=state.busy_job(),
                  progress_age_s=time.monotonic() - state.last_progress,
                  batches_run=counters.batches_run if counters else 0,
                  items_run=counters.items_run if counters else 0,
                  jobs_cancelled=counters.jobs_cancelled if counters else 0,
                  jobs_expired=counters.jobs_expired if counters else 0,
                  compiles_after_ready=state.compiles())


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
        if isinstance(message, p.Cancel):
            with state.lock:
                state.cancelled.add(message.job_id)
            continue
        if state.busy_job() == 0 and state.jobs.empty():
            state.progress()  # an idle worker's clock starts when work arrives
        state.jobs.put(message)


def apply_fault(fault: p.Fault, state: WorkerState) -> None:
    """Test-only faults (the daemon forwards them only with fault_injection = true)."""
    action = FAULT_ACTIONS.get(fault.kind)
    if action is not None:
        action(fault, state)


def _hang(fault: p.Fault, state: WorkerState) -> None:
    time.sleep(fault.amount or 3600)


def _grow_memory(fault: p.Fault, state: WorkerState) -> None:
    state.growth.append(bytearray(int(fault.amount)))  # bytearray pages are touched: real RSS


def _crash(fault: p.Fault, state: WorkerState) -> None:
    os._exit(70)


def _slow(fault: p.Fault, state: WorkerState) -> None:
    """Sleep `amount` s before each of the next extra["batches"] batches (0/absent: until amount 0 clears it)."""
    slow_down(state.scheduler, fault.amount, int(fault.extra.get("batches", "0") or 0))


FAULT_ACTIONS: dict[str, Callable[[p.Fault, WorkerState], None]] = {
    "hang": _hang, "grow_memory": _grow_memory, "crash": _crash, "slow": _slow}


def boot(spec: EngineSpec, outbox: Outbox, state: WorkerState) -> Any:
    from ishowttsd.engine.compiled import compile_engine, compiled_graphs
    from ishowttsd.engine.f5 import BootError, F5Engine

    started = time.monotonic()
    try:
        engine = F5Engine.load(spec)
        if spec.compile:
            compile_engine(engine, compile_spec(spec))  # compile_spec: the compile_failure fault hook
        before_warm = compiled_graphs()
        warm_s = warm(engine, spec, state)
    except BootError as exc:
        outbox.send(p.BootFailed(str(exc)))
        sys.exit(p.EXIT_BOOT_FAILURE)
    state.memory = engine.memory
    at_ready = compiled_graphs()
    state.compiles = lambda: compiled_graphs() - at_ready
    buckets = engine.shapes.widths if engine.shapes else ()
    outbox.send(p.Ready(model=spec.model, device=str(engine.device), dtype=str(engine.dtype).removeprefix("torch."),
                        compiled=engine.compiled, compile_error=engine.compile_error,
                        boot_s=time.monotonic() - started, warm_s=warm_s, warm_graphs=at_ready - before_warm,
                        buckets=buckets,
                        max_batch=spec.max_batch, compile_note=engine.compile_note))
    return engine


def warm(engine: Any, spec: EngineSpec, state: WorkerState) -> float:
    """Before Ready: every compiled shape bucket, then one real synthesis (lazy init, caches)."""
    from ishowttsd.engine.compiled import fall_back_to_eager, warm_engine

    if spec.warmup_voice is None:
        return 0.0
    job = p.Job(job_id=0, text="Warm up.", voice=spec.warmup_voice, nfe=spec.nfe, speed=1.0, seed=0)
    started = time.monotonic()
    try:
        warm_engine(engine, engine.reference(spec.warmup_voice), state.progress)
        engine.synthesize(job, lambda pcm: None, state.progress)
    except Exception as exc:
        if not engine.compiled:
            raise
        fall_back_to_eager(engine, f"compiled warm-up failed: {type(exc).__name__}: {exc}"[:2000])
        engine.synthesize(job, lambda pcm: None, state.progress)
    return time.monotonic() - started


def start_profile(message: p.Profile, scheduler: Any, outbox: Outbox) -> None:
    from ishowttsd.engine.profiling import TraceRecorder

    try:
        recorder = TraceRecorder(message.path, message.batches)
    except Exception as exc:
        outbox.send(p.ProfileDone(message.request_id, message.path, f"{type(exc).__name__}: {exc}"))
        return

    def after_batch() -> None:
        if recorder.batch_done():
            scheduler.after_batch = lambda: None
            outbox.send(p.ProfileDone(message.request_id, message.path))

    scheduler.after_batch = after_batch


def handle(message: object, scheduler: Any, spec: EngineSpec, outbox: Outbox, state: WorkerState) -> bool:
    """Act on one queued message; False when the worker should finish its jobs and exit."""
    if message is STOP or isinstance(message, p.Retire):
        return False
    if isinstance(message, p.Job):
        scheduler.add(message)
    elif isinstance(message, p.Profile):
        start_profile(message, scheduler, outbox)
    elif isinstance(message, p.Fault) and spec.fault_injection:
        apply_fault(message, state)
    return True


def next_message(state: WorkerState, wait_s: float | None) -> object | None:
    try:
        return state.jobs.get(timeout=wait_s) if wait_s is None or wait_s > 0 else state.jobs.get_nowait()
    except queue.Empty:
        return None


def serve(engine: Any, spec: EngineSpec, outbox: Outbox, state: WorkerState) -> None:
    from ishowttsd.engine.scheduler import BatchScheduler

    scheduler = BatchScheduler(engine, spec, outbox.send, state.progress)
    state.scheduler = scheduler
    serving = True
    while serving or scheduler.active:
        message = next_message(state, scheduler.wait_s())
        while message is not None:
            serving = serving and handle(message, scheduler, spec, outbox, state)
            message = next_message(state, 0.0)
        scheduler.cancel(state.take_cancelled())
        before = len(scheduler.active)
        scheduler.run_due()
        state.jobs_done += max(0, before - len(scheduler.active))


def worker_main(conn: Connection, spec: EngineSpec) -> None:
    """Entry point of the spawned process."""
    for key, value in cache_environment(spec.cache_dir).items():
        os.environ.setdefault(key, value)  # before torch is imported
    outbox, state = Outbox(conn), WorkerState()
    threading.Thread(target=read_pipe, args=(conn, outbox, state), name="pipe-reader", daemon=True).start()
    engine = boot(spec, outbox, state)
    serve(engine, spec, outbox, state)
    sys.exit(0)
