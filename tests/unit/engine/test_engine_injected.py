"""engine/injected.py: the worker's slow and compile_failure faults, without a worker."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ishowttsd.engine import protocol as p
from ishowttsd.engine.injected import FAILING_BACKEND, SlowedEngine, compile_spec, slow_down
from ishowttsd.engine.spec import EngineSpec
from ishowttsd.engine.worker import WorkerState, apply_fault


class CountingEngine:
    shapes = "the real engine's shapes"

    def __init__(self) -> None:
        self.batches: list[tuple[Any, int]] = []

    def run_batch(self, items: Any, nfe: int, progress: Any) -> str:
        self.batches.append((items, nfe))
        return "out"


class Scheduler:
    def __init__(self) -> None:
        self.engine: Any = CountingEngine()


def test_a_slowed_engine_sleeps_before_the_next_n_batches_only() -> None:
    slept: list[float] = []
    engine = SlowedEngine(CountingEngine(), 2.5, 2, sleep=slept.append)
    assert [engine.run_batch([1], 8, lambda: None) for _ in range(3)] == ["out"] * 3
    assert slept == [2.5, 2.5] and len(engine.engine.batches) == 3
    assert engine.shapes == CountingEngine.shapes  # everything else is the real engine's


def test_without_a_count_it_sleeps_until_cleared() -> None:
    slept: list[float] = []
    engine = SlowedEngine(CountingEngine(), 0.5, None, sleep=slept.append)
    for _ in range(5):
        engine.run_batch([], 2, lambda: None)
    assert slept == [0.5] * 5


def test_slow_down_wraps_once_and_a_zero_delay_restores_the_real_engine() -> None:
    scheduler = Scheduler()
    real = scheduler.engine
    slow_down(scheduler, 1.0, 0)
    slow_down(scheduler, 2.0, 3)
    assert isinstance(scheduler.engine, SlowedEngine) and scheduler.engine.engine is real
    assert (scheduler.engine.delay_s, scheduler.engine.batches_left) == (2.0, 3)
    slow_down(scheduler, 0.0, 0)
    assert scheduler.engine is real


def test_the_worker_applies_slow_with_its_batch_count_from_extra() -> None:
    state = WorkerState()
    state.scheduler = Scheduler()
    apply_fault(p.Fault("slow", 1.5, {"batches": "4"}), state)
    assert (state.scheduler.engine.delay_s, state.scheduler.engine.batches_left) == (1.5, 4)
    apply_fault(p.Fault("no_such_kind", 1.0), state)  # unknown kinds are ignored, as before
    apply_fault(p.Fault("slow", 0.0), state)
    assert isinstance(state.scheduler.engine, CountingEngine)


@pytest.mark.parametrize(("injection", "flag"), [(False, False), (False, True), (True, False)])
def test_compile_spec_is_the_spec_itself_unless_the_fault_is_on(injection: bool, flag: bool, tmp_path: Path) -> None:
    spec = EngineSpec(model="tiny", cache_dir=str(tmp_path), fault_injection=injection, fault_compile_failure=flag)
    assert compile_spec(spec) is spec


def test_compile_spec_with_the_fault_compiles_with_a_backend_that_rejects_every_graph(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    spec = EngineSpec(model="tiny", cache_dir=str(tmp_path), compile=True, fault_injection=True,
                      fault_compile_failure=True)
    faulty = compile_spec(spec)
    assert faulty.compile_backend == FAILING_BACKEND and compile_spec(spec) == faulty  # registering twice is fine
    compiled = torch.compile(lambda x: x + 1, backend=faulty.compile_backend)
    with pytest.raises(Exception, match="fault injection: compile_failure"):
        compiled(torch.ones(2))
