"""Worker-side fault injection (test-only; the worker applies these only with spec.fault_injection).

- slow: SlowedEngine sleeps before each of the next batches, then runs the batch on the real engine.
  The sleep is inside the batch (the job is "on the device"), so the hang detector sees the progress
  age grow by the delay and no more: a delay shorter than heartbeat_timeout_s is slow, not hung.
- compile_failure: compile_spec() swaps the compile backend for one that rejects every graph, so the
  real path runs: torch.compile wraps lazily, the first warm-up call fails inside dynamo, and
  worker.warm falls back to eager with the reason in Ready.compile_error.

No torch at import (worker.py imports this in the daemon's process too, through engine/handle.py).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

from ishowttsd.engine.spec import EngineSpec

FAILING_BACKEND = "ishowttsd_fault_compile_failure"
COMPILE_FAILURE_MESSAGE = "fault injection: compile_failure (this backend rejects every graph)"


class SlowedEngine:
    """The engine with `delay_s` of sleep before each of the next `batches` batches (None: until cleared)."""

    def __init__(self, engine: Any, delay_s: float, batches: int | None, sleep: Callable[[float], None] = time.sleep):
        self.engine, self.delay_s, self.batches_left, self._sleep = engine, delay_s, batches, sleep

    def run_batch(self, items: Any, nfe: int, progress: Callable[[], None]) -> Any:
        if self.batches_left is None or self.batches_left > 0:
            self.batches_left = None if self.batches_left is None else self.batches_left - 1
            self._sleep(self.delay_s)
        return self.engine.run_batch(items, nfe, progress)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.engine, name)


def slow_down(scheduler: Any, delay_s: float, batches: int) -> None:
    """Slow the scheduler's engine (batches 0 = until cleared); delay 0 clears it."""
    engine = scheduler.engine
    while isinstance(engine, SlowedEngine):
        engine = engine.engine
    scheduler.engine = SlowedEngine(engine, delay_s, batches or None) if delay_s > 0 else engine


def compile_spec(spec: EngineSpec) -> EngineSpec:
    """The spec to compile with: unchanged, or (compile_failure fault) with a backend that always fails."""
    if not (spec.fault_injection and spec.fault_compile_failure):
        return spec
    register_failing_backend()
    return dataclasses.replace(spec, compile_backend=FAILING_BACKEND)


def reject_graph(graph: Any, example_inputs: Any) -> Any:
    raise RuntimeError(COMPILE_FAILURE_MESSAGE)


def register_failing_backend() -> None:
    from torch._dynamo import list_backends, register_backend

    if FAILING_BACKEND not in list_backends(exclude_tags=()):
        register_backend(reject_graph, name=FAILING_BACKEND)
