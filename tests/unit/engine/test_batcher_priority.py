"""Earliest-need-first ordering in ishowttsd.engine.batcher: needed_at and plan_batches' order.

What the properties prove (plan_batches is called with every item in hand, as the scheduler does):
- a plan places every item exactly once (batch, expired, oversized or waiting); with window 0 every
  live item that fits a bucket is dispatched: the batches are a permutation of the due items;
- batches come out ordered by their most needed item, each batch lists its items most needed
  first, and of one (bucket, nfe) group the most needed items are picked first;
- a batch led by an item needed after x never runs before x's batch;
- a stream's first chunk goes before every batch made only of later chunks of streams whose
  listeners hold more than the margin of audio;
- no starvation (simulated worker, one batch at a time, each taking `batch_s`): every chunk of every
  job is synthesised, and while a buffered job's chunk waits, the batches led by chunks of jobs that
  arrived after it are led by later chunks of streams holding under `margin` of audio, at most
  margin / (shortest chunk audio) of them per such stream (its need grows with every chunk it gets).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ishowttsd.engine.batcher import STREAM_MARGIN_S, Batch, PendingItem, bucket_for, needed_at, plan_batches

BUCKETS = (256, 512, 1024)


def need_order(item: PendingItem) -> tuple[float, float, int]:
    """Most needed first; ties: older first, then lower job id (written out here, not imported)."""
    return (item.needed_s, item.arrived_s, item.job_id)


# ---------------------------------------------------------------- needed_at


def test_a_buffered_job_and_a_streams_first_chunk_are_needed_at_arrival() -> None:
    assert needed_at(10.0, None, 0.0, stream=True) == 10.0
    assert needed_at(10.0, None, 0.0, stream=False) == 10.0
    assert needed_at(10.0, 10.2, 3.0, stream=False) == 10.0  # buffered: audio sent changes nothing


def test_a_started_stream_is_needed_when_its_listener_runs_out_less_the_margin() -> None:
    assert needed_at(10.0, 10.2, 3.0, stream=True, margin_s=0.5) == pytest.approx(12.7)
    assert needed_at(10.0, 10.2, 0.1, stream=True, margin_s=0.5) == pytest.approx(9.8)  # before arrival
    assert needed_at(10.0, 10.2, 3.0, stream=True) == pytest.approx(13.2 - STREAM_MARGIN_S)


@given(st.floats(0, 100), st.floats(0, 10), st.floats(0, 50), st.floats(0, 5), st.floats(0.001, 5))
def test_more_audio_sent_means_needed_later(arrived: float, lag: float, sent: float, margin: float,
                                            more: float) -> None:
    first = arrived + lag
    need = needed_at(arrived, first, sent, stream=True, margin_s=margin)
    assert needed_at(arrived, first, sent + more, stream=True, margin_s=margin) > need
    assert needed_at(arrived, first, sent, stream=True, margin_s=margin + more) < need


def test_pending_item_needed_defaults_to_its_arrival() -> None:
    assert PendingItem(1, 8, 300, 4.0).needed_s == 4.0
    assert PendingItem(1, 8, 300, 4.0, math.inf, 2.5).needed_s == 2.5


# ---------------------------------------------------------------- plan order examples


def item(job_id: int, arrived: float, needed: float, frames: int = 300, nfe: int = 8) -> PendingItem:
    return PendingItem(job_id, nfe, frames, arrived, math.inf, needed)


def test_first_chunks_go_before_an_older_streams_later_chunk() -> None:
    # job 1 arrived first but its listener has audio until 12.0; jobs 2 and 3 have heard nothing
    pending = [item(1, 10.0, 12.0), item(2, 10.1, 10.1), item(3, 10.2, 10.2, frames=100)]
    plan = plan_batches(pending, 10.3, max_batch=1, window_s=0.0, buckets=BUCKETS)
    assert plan.batches == [Batch(512, 8, (2,)), Batch(256, 8, (3,)), Batch(512, 8, (1,))]


def test_a_full_group_takes_its_most_needed_items_first() -> None:
    pending = [item(1, 10.0, 14.0), item(2, 10.0, 13.0), item(3, 10.5, 10.5), item(4, 10.6, 9.0)]
    plan = plan_batches(pending, 11.0, max_batch=2, window_s=0.0, buckets=BUCKETS)
    assert plan.batches == [Batch(512, 8, (4, 3)), Batch(512, 8, (2, 1))]


def test_a_cut_that_is_not_full_goes_when_its_oldest_item_waited_the_window() -> None:
    # the second cut is led by item 5 (fresh) but holds item 4, which arrived a second ago
    pending = [item(1, 10.9, 9.0), item(2, 10.95, 10.95), item(3, 10.96, 10.96), item(4, 10.0, 20.0),
               item(5, 10.97, 15.0)]
    plan = plan_batches(pending, 11.0, max_batch=3, window_s=0.5, buckets=BUCKETS)
    assert plan.batches == [Batch(512, 8, (1, 2, 3)), Batch(512, 8, (5, 4))]


# ---------------------------------------------------------------- plan properties

needed_items = st.lists(
    st.builds(
        PendingItem,
        job_id=st.integers(0, 10**6),
        nfe=st.sampled_from([8, 32]),
        frames=st.integers(1, 1200),
        arrived_s=st.floats(0.0, 10.0),
        deadline_s=st.one_of(st.just(math.inf), st.floats(0.0, 20.0)),
        needed_s=st.floats(-5.0, 30.0),
    ),
    max_size=40,
    unique_by=lambda i: i.job_id,
)


@given(needed_items, st.floats(0.0, 15.0), st.integers(1, 6), st.floats(0.0, 2.0))
def test_plan_places_everything_once_most_needed_first(
    pending: list[PendingItem], now: float, max_batch: int, window: float
) -> None:
    plan = plan_batches(pending, now, max_batch=max_batch, window_s=window, buckets=BUCKETS)
    by_id = {i.job_id: i for i in pending}
    dispatched = [j for b in plan.batches for j in b.job_ids]
    placed = dispatched + plan.expired + plan.oversized
    assert len(placed) == len(set(placed)) and set(placed) <= set(by_id)
    keys = [[need_order(by_id[j]) for j in b.job_ids] for b in plan.batches]
    assert all(k == sorted(k) for k in keys)  # each batch most needed first
    assert [k[0] for k in keys] == sorted(k[0] for k in keys)  # batches by their most needed item
    for x in dispatched:  # nothing needed after x leads a batch ahead of x's batch
        at = next(n for n, b in enumerate(plan.batches) if x in b.job_ids)
        assert all(k[0] <= need_order(by_id[x]) for k in keys[:at])
    for i, first in enumerate(plan.batches):
        for j in range(i + 1, len(plan.batches)):
            if (plan.batches[j].bucket, plan.batches[j].nfe) == (first.bucket, first.nfe):
                assert keys[i][-1] <= keys[j][0]  # one group: the most needed were picked first


@given(needed_items, st.floats(0.0, 15.0), st.integers(1, 6))
def test_with_no_window_the_batches_are_a_permutation_of_the_due_items(
    pending: list[PendingItem], now: float, max_batch: int
) -> None:
    plan = plan_batches(pending, now, max_batch=max_batch, window_s=0.0, buckets=BUCKETS)
    dispatched = sorted(j for b in plan.batches for j in b.job_ids)
    due = sorted(i.job_id for i in pending if i.deadline_s > now and bucket_for(i.frames, BUCKETS))
    assert dispatched == due and plan.wait_s is None


@dataclass(frozen=True)
class StreamState:
    """One job's next chunk, as the scheduler sees it."""

    job_id: int
    frames: int
    arrived_s: float
    first_audio_lag_s: float | None  # None: nothing sent yet
    audio_sent_s: float
    stream: bool

    def pending(self, margin_s: float) -> PendingItem:
        first = None if self.first_audio_lag_s is None else self.arrived_s + self.first_audio_lag_s
        need = needed_at(self.arrived_s, first, self.audio_sent_s, stream=self.stream, margin_s=margin_s)
        return PendingItem(self.job_id, 8, self.frames, self.arrived_s, math.inf, need)


job_states = st.lists(
    st.builds(StreamState, job_id=st.integers(0, 10**6), frames=st.integers(1, 1000),
              arrived_s=st.floats(0.0, 10.0), first_audio_lag_s=st.none() | st.floats(0.0, 5.0),
              audio_sent_s=st.floats(0.0, 30.0), stream=st.booleans()),
    max_size=30, unique_by=lambda s: s.job_id,
)


@given(job_states, st.floats(0.0, 0.7), st.integers(1, 6), st.floats(0.0, 10.0))
def test_first_chunks_go_before_later_chunks_with_audio_in_hand(
    states: list[StreamState], margin: float, max_batch: int, extra_s: float
) -> None:
    now = 10.0 + extra_s  # after every arrival
    plan = plan_batches([s.pending(margin) for s in states], now, max_batch=max_batch, window_s=0.0,
                        buckets=BUCKETS)
    first_chunk = {s.job_id for s in states if s.stream and s.first_audio_lag_s is None}

    def in_hand_s(s: StreamState) -> float:  # audio the listener has left to hear
        return s.arrived_s + (s.first_audio_lag_s or 0.0) + s.audio_sent_s - now

    comfortable = {s.job_id for s in states
                   if s.stream and s.first_audio_lag_s is not None and in_hand_s(s) > margin}
    with_first = [n for n, b in enumerate(plan.batches) if first_chunk & set(b.job_ids)]
    only_comfortable = [n for n, b in enumerate(plan.batches) if set(b.job_ids) <= comfortable]
    assert not with_first or not only_comfortable or max(with_first) < min(only_comfortable)


# ---------------------------------------------------------------- no starvation (simulated worker)


@dataclass
class SimJob:
    job_id: int
    arrived_s: float
    stream: bool
    audio_s: list[float]  # each chunk's audio
    frames: int
    done: int = 0
    first_audio_s: float | None = None
    started_batches: list[int] = field(default_factory=list)

    def pending(self, margin_s: float) -> PendingItem:
        need = needed_at(self.arrived_s, self.first_audio_s, sum(self.audio_s[: self.done]),
                         stream=self.stream, margin_s=margin_s)
        return PendingItem(self.job_id, 8, self.frames, self.arrived_s, math.inf, need)


sim_jobs = st.lists(
    st.tuples(st.floats(0.0, 2.0), st.booleans(), st.lists(st.floats(0.05, 2.0), min_size=1, max_size=6),
              st.sampled_from([200, 400, 900])),
    min_size=1, max_size=14,
)


def simulate(jobs: list[SimJob], max_batch: int, batch_s: float, margin_s: float) -> list[tuple[float, list[int]]]:
    """Run the plan's first batch, advance the clock by batch_s, repeat; returns (start, job ids) per batch."""
    now, log = 0.0, []
    for _ in range(10_000):
        live = [j for j in jobs if j.done < len(j.audio_s) and j.arrived_s <= now]
        if not any(j.done < len(j.audio_s) for j in jobs):
            return log
        if not live:
            now = min(j.arrived_s for j in jobs if j.done < len(j.audio_s))
            continue
        plan = plan_batches([j.pending(margin_s) for j in live], now, max_batch=max_batch, window_s=0.0,
                            buckets=BUCKETS)
        ids = list(plan.batches[0].job_ids)
        log.append((now, ids))
        now += batch_s
        for job in (j for j in jobs if j.job_id in ids):
            job.done += 1
            job.first_audio_s = now if job.first_audio_s is None else job.first_audio_s
    raise AssertionError("the simulation did not finish")


def waits_of(job: SimJob, log: list[tuple[float, list[int]]]) -> list[range]:
    """For each chunk of `job`: the indices of the batches that ran while that chunk was pending."""
    mine = [n for n, (_, ids) in enumerate(log) if job.job_id in ids]
    first = next(n for n, (start, _) in enumerate(log) if start >= job.arrived_s)
    return [range(lo, hi) for lo, hi in zip([first] + [n + 1 for n in mine[:-1]], mine, strict=True)]


@given(sim_jobs, st.integers(1, 4), st.floats(0.01, 0.3), st.floats(0.0, 1.0))
def test_nothing_starves_and_later_arrivals_overtake_a_buffered_job_only_briefly(
    specs: list[tuple[float, bool, list[float], int]], max_batch: int, batch_s: float, margin: float
) -> None:
    jobs = [SimJob(n, t, stream, audio, frames) for n, (t, stream, audio, frames) in enumerate(specs)]
    shortest = min(a for j in jobs for a in j.audio_s)
    log = simulate(jobs, max_batch, batch_s, margin)
    assert all(j.done == len(j.audio_s) for j in jobs)  # every chunk was synthesised
    chunk_of = dict.fromkeys(range(len(jobs)), 0)
    leaders: list[tuple[int, int]] = []  # per batch: (leading job, its chunk index)
    for _, ids in log:
        leaders.append((ids[0], chunk_of[ids[0]]))
        chunk_of.update({job_id: chunk_of[job_id] + 1 for job_id in ids})
    for x in (j for j in jobs if not j.stream):
        for wait in waits_of(x, log):
            overtakers = [leaders[n] for n in wait if (jobs[leaders[n][0]].arrived_s, leaders[n][0])
                          > (x.arrived_s, x.job_id)]
            assert all(k >= 1 and jobs[job].stream for job, k in overtakers)
            for job in {job for job, _ in overtakers}:
                assert sum(1 for j, _ in overtakers if j == job) <= margin / shortest + 1e-9
