"""The worker's batch scheduler against a fake engine: grouping, order, cancellation, deadlines, errors."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

from ishowttsd.engine import protocol as p
from ishowttsd.engine.scheduler import BatchScheduler
from ishowttsd.engine.spec import EngineSpec

VOICE = p.VoiceRef("v", "/nonexistent.wav", "Reference text.")


@dataclass
class Prepared:
    job: p.Job
    frames: list[int]


@dataclass
class FakeEngine:
    """Chunks are the text split on '|'; a chunk's frames are 300 + 10 per character."""

    batches: list[list[tuple[int, int]]] = field(default_factory=list)
    fail_next: Exception | None = None
    recovered: int = 0
    on_batch: Any = None
    shapes: Any = None
    samples: int = 2400  # audio per chunk: 0.1 s

    def prepare(self, job: p.Job) -> Prepared:
        if not job.text:
            raise ValueError("the text is empty")
        return Prepared(job, [300 + 10 * len(c) for c in job.text.split("|")])

    def run_batch(self, items: list[tuple[Prepared, int]], nfe: int, progress: Any) -> Any:
        self.batches.append([(prep.job.job_id, index) for prep, index in items])
        if self.on_batch:
            self.on_batch()
        if self.fail_next is not None:
            exc, self.fail_next = self.fail_next, None
            raise exc
        waves = [np.full(self.samples, 0.1 * prep.job.job_id, dtype=np.float32) for prep, _ in items]
        return type("Out", (), {"waves": waves, "synth_s": 0.5, "vocoder_s": 0.1 * len(items)})()

    def recover(self) -> None:
        self.recovered += 1


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def make(max_batch: int = 4, window_ms: float = 0.0, samples: int = 2400, fill_ms: float = 0.0
         ) -> tuple[BatchScheduler, FakeEngine, list[object], Clock]:
    engine, sent, clock = FakeEngine(samples=samples), [], Clock()
    spec = EngineSpec(model="tiny", cache_dir="/tmp", max_batch=max_batch, batch_window_ms=window_ms,
                      crossfade_ms=0.0, busy_fill_ms=fill_ms)
    return BatchScheduler(engine, spec, sent.append, clock=clock), engine, sent, clock


def job(job_id: int, text: str = "hello", nfe: int = 8, deadline: float = math.inf, stream: bool = False) -> p.Job:
    return p.Job(job_id, text, VOICE, nfe, 1.0, seed=job_id, stream=stream, deadline_s=deadline)


def run_all_due(scheduler: BatchScheduler) -> None:
    """What the worker loop does when no message comes: run_due while work is due."""
    while scheduler.wait_s() == 0.0:
        scheduler.run_due()


def of_type(sent: list[object], kind: type) -> list[Any]:
    return [m for m in sent if isinstance(m, kind)]


def test_jobs_in_hand_run_as_one_batch_and_each_gets_its_audio() -> None:
    scheduler, engine, sent, _ = make()
    for i in (1, 2, 3):
        scheduler.add(job(i))
    assert scheduler.wait_s() == 0.0
    scheduler.run_due()
    assert engine.batches == [[(1, 0), (2, 0), (3, 0)]]
    done = {d.job_id: d for d in of_type(sent, p.Done)}
    assert set(done) == {1, 2, 3} and all(d.batch_size == 3 for d in done.values())
    chunk = next(c for c in of_type(sent, p.Chunk) if c.job_id == 2)
    assert np.frombuffer(chunk.pcm, dtype="<i2")[0] == int(0.2 * 32767)
    assert scheduler.counters.batches_run == 1 and scheduler.counters.items_run == 3
    assert scheduler.wait_s() is None


def test_groups_split_by_nfe_and_max_batch() -> None:
    scheduler, engine, _, _ = make(max_batch=2)
    for i, nfe in ((1, 8), (2, 8), (3, 8), (4, 32)):
        scheduler.add(job(i, nfe=nfe))
    assert scheduler.run_due() == 1  # one batch a call
    run_all_due(scheduler)
    assert sorted(map(sorted, engine.batches)) == [[(1, 0), (2, 0)], [(3, 0)], [(4, 0)]]


def test_multi_chunk_jobs_advance_chunk_by_chunk_in_order() -> None:
    scheduler, engine, sent, _ = make()
    scheduler.add(job(1, "a|b|c"))
    scheduler.add(job(2, "a"))
    while scheduler.wait_s() is not None:
        scheduler.run_due()
    assert engine.batches == [[(1, 0), (2, 0)], [(1, 1)], [(1, 2)]]
    assert [c.index for c in of_type(sent, p.Chunk) if c.job_id == 1] == [0, 1, 2]
    done = next(d for d in of_type(sent, p.Done) if d.job_id == 1)
    assert done.samples == 3 * 2400 and done.synth_s == pytest.approx(1.5)


def test_window_holds_a_lone_job_until_it_expires() -> None:
    scheduler, engine, _, clock = make(window_ms=50)
    scheduler.add(job(1))
    assert scheduler.wait_s() == pytest.approx(0.05)
    scheduler.run_due()
    assert engine.batches == []
    clock.now += 0.05
    scheduler.run_due()
    assert engine.batches == [[(1, 0)]]


def test_cancelled_jobs_never_run_and_output_in_flight_is_discarded() -> None:
    scheduler, engine, sent, _ = make()
    scheduler.add(job(1, "a|b"))
    scheduler.add(job(2, "a|b"))
    scheduler.cancel({2})
    engine.on_batch = lambda: scheduler.cancel({1})  # client leaves while its batch runs
    scheduler.run_due()
    assert engine.batches == [[(1, 0)]]
    assert of_type(sent, p.Chunk) == [] and of_type(sent, p.Done) == []
    assert scheduler.counters.jobs_cancelled == 2 and scheduler.wait_s() is None


def test_expired_jobs_are_dropped_with_a_deadline_error() -> None:
    scheduler, engine, sent, clock = make()
    scheduler.add(job(1, deadline=clock.now + 1))
    scheduler.add(job(2))
    clock.now += 2
    scheduler.run_due()
    assert engine.batches == [[(2, 0)]]
    assert [(e.job_id, e.code) for e in of_type(sent, p.Error)] == [(1, "deadline")]
    assert scheduler.counters.jobs_expired == 1


def test_bad_input_is_refused_at_once_and_engine_failure_fails_the_batch() -> None:
    scheduler, engine, sent, _ = make()
    scheduler.add(job(1, text=""))
    assert [(e.job_id, e.code) for e in of_type(sent, p.Error)] == [(1, "bad_input")]
    scheduler.add(job(2))
    scheduler.add(job(3))
    engine.fail_next = RuntimeError("CUDA error: out of memory")
    scheduler.run_due()
    assert sorted((e.job_id, e.code) for e in of_type(sent, p.Error)[1:]) == [(2, "engine"), (3, "engine")]
    assert engine.recovered == 1 and not scheduler.active


def test_oversized_items_run_alone() -> None:
    scheduler, engine, _, _ = make()
    scheduler.add(job(1, text="x" * 500))  # 5300 frames: over every bucket
    scheduler.add(job(2))
    run_all_due(scheduler)
    assert sorted(engine.batches) == [[(1, 0)], [(2, 0)]]


# ---------------------------------------------------------------- earliest need first


def test_a_new_streams_first_chunk_goes_before_an_older_streams_later_chunks() -> None:
    scheduler, engine, _, clock = make(max_batch=1, samples=24_000)  # 1 s of audio a chunk
    engine.on_batch = lambda: setattr(clock, "now", clock.now + 0.05)
    scheduler.add(job(1, "a|b|c", stream=True))
    scheduler.run_due()
    scheduler.add(job(2, "a|b", stream=True))  # its listener has nothing; job 1's has 1 s
    run_all_due(scheduler)
    assert engine.batches == [[(1, 0)], [(2, 0)], [(1, 1)], [(2, 1)], [(1, 2)]]


@pytest.mark.parametrize(("samples", "first_is_stream", "margin_s"), [
    (2_400, True, None),  # a stream about to run dry (0.1 s a chunk, less than the 0.5 s margin)
    (24_000, False, None),  # a buffered job needs all its chunks at arrival
    (24_000, True, 1.5),  # the margin decides: more than the 1 s in hand makes job 1 urgent
], ids=["stream_about_to_run_dry", "buffered_job_needs_all_chunks_at_arrival", "margin_decides"])
def test_job_1s_second_chunk_goes_before_a_new_first_chunk_when_it_is_needed_first(
        samples: int, first_is_stream: bool, margin_s: float | None) -> None:
    scheduler, engine, _, clock = make(max_batch=1, samples=samples)
    if margin_s is not None:
        scheduler.stream_margin_s = margin_s
    engine.on_batch = lambda: setattr(clock, "now", clock.now + 0.05)
    scheduler.add(job(1, "a|b", stream=first_is_stream))
    scheduler.run_due()
    scheduler.add(job(2, "a", stream=True))
    run_all_due(scheduler)
    assert engine.batches == [[(1, 0)], [(1, 1)], [(2, 0)]]


def test_first_audio_time_and_audio_sent_give_the_need() -> None:
    scheduler, engine, _, clock = make(samples=12_000)
    engine.on_batch = lambda: setattr(clock, "now", clock.now + 0.25)
    scheduler.add(job(1, "a|b|c", stream=True))
    scheduler.run_due()
    active = scheduler.active[1]
    assert active.first_audio_s == pytest.approx(100.25) and active.samples == 12_000
    assert active.needed_s(0.5) == pytest.approx(100.25 + 0.5 - 0.5)
    scheduler.run_due()
    assert active.first_audio_s == pytest.approx(100.25)  # the first Chunk's time stays
    assert active.needed_s(0.2) == pytest.approx(100.25 + 1.0 - 0.2)


def test_streams_arriving_one_per_batch_each_start_at_the_next_batch() -> None:
    scheduler, engine, _, clock = make(max_batch=1, samples=24_000)
    engine.on_batch = lambda: setattr(clock, "now", clock.now + 0.05)
    for job_id in range(1, 7):  # each arrives while the batch before runs
        scheduler.add(job(job_id, "a|b|c|d|e|f", stream=True))
        scheduler.run_due()
    run_all_due(scheduler)
    firsts = [engine.batches.index([(job_id, 0)]) for job_id in range(1, 7)]
    assert firsts == [0, 1, 2, 3, 4, 5]
    assert len(engine.batches) == 36


def test_after_a_batch_of_several_the_next_waits_to_fill_but_not_after_a_single_item() -> None:
    scheduler, engine, _, clock = make(max_batch=3, fill_ms=5)
    scheduler.add(job(1))
    run_all_due(scheduler)  # a lone item: no hold afterwards
    scheduler.add(job(2))
    assert scheduler.wait_s() == 0.0
    scheduler.add(job(3))
    run_all_due(scheduler)  # jobs 2 and 3 together: now busy
    scheduler.add(job(4))
    assert scheduler.wait_s() == pytest.approx(0.005)  # job 4 waits for company ...
    scheduler.add(job(5))
    scheduler.add(job(6))
    assert scheduler.wait_s() == 0.0  # ... unless its group is full
    run_all_due(scheduler)
    scheduler.add(job(7))
    clock.now += 0.005
    assert scheduler.wait_s() == 0.0  # or the hold is over
    run_all_due(scheduler)
    assert engine.batches == [[(1, 0)], [(2, 0), (3, 0)], [(4, 0), (5, 0), (6, 0)], [(7, 0)]]


def test_a_hold_never_delays_work_past_its_deadline() -> None:
    scheduler, _, _, clock = make(max_batch=3, fill_ms=50)
    scheduler.add(job(1))
    scheduler.add(job(2))
    run_all_due(scheduler)
    scheduler.add(job(3, deadline=clock.now + 0.01))
    assert scheduler.wait_s() == pytest.approx(0.01)  # the deadline (margin 0 in the worker), not 0.05
