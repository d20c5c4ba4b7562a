"""Tests of ishowttsd.engine.batcher: text chunks, frame estimates, buckets, batch plans."""

from __future__ import annotations

import math
import re

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from ishowttsd.engine.batcher import (
    Batch,
    PendingItem,
    batch_buckets,
    bucket_for,
    default_buckets,
    estimate_frames,
    plan_batches,
    split_text,
)


def f5_chunk_text(text: str, max_chars: int = 135) -> list[str]:
    """f5-tts 1.1.22 utils_infer.chunk_text, copied verbatim (MIT) as the reference behaviour."""
    chunks = []
    current_chunk = ""
    sentences = re.split(r"(?<=[;:,.!?])\s+|(?<=[；：，。！？])", text)
    for sentence in sentences:
        if not sentence:
            continue
        if len(current_chunk.encode("utf-8")) + len(sentence.encode("utf-8")) <= max_chars:
            current_chunk += sentence + " " if sentence and len(sentence[-1].encode("utf-8")) == 1 else sentence
        else:
            if current_chunk:
                chunks.append(current_chunk.strip())
            current_chunk = sentence + " " if sentence and len(sentence[-1].encode("utf-8")) == 1 else sentence
    if current_chunk:
        chunks.append(current_chunk.strip())
    return chunks


def nbytes(text: str) -> int:
    return len(text.encode("utf-8"))


def no_ws(text: str) -> str:
    return "".join(text.split())


# ---------------------------------------------------------------- split_text examples


def test_sentences_are_packed_greedily() -> None:
    text = "Hello there, how are you? I am fine. Thanks!"
    assert split_text(text, 25) == ["Hello there, how are you?", "I am fine. Thanks!"]  # 25 bytes fit exactly
    assert split_text(text, 24) == ["Hello there,", "how are you? I am fine.", "Thanks!"]
    assert split_text(text, 135) == [text]


def test_cjk_punctuation_splits_without_spaces() -> None:
    assert split_text("你好，世界。今天天气很好！", 21) == ["你好，世界。", "今天天气很好！"]
    # a clause longer than the limit has no space to split at: it is cut between characters
    assert split_text("你好，世界。今天天气很好！", 18) == ["你好，世界。", "今天天气很好", "！"]


def test_long_sentence_splits_at_spaces() -> None:
    assert split_text("one two three four five six", 10) == ["one two", "three four", "five six"]


def test_long_word_is_hard_split_on_character_boundaries() -> None:
    assert split_text("a" * 25, 10) == ["a" * 10, "a" * 10, "a" * 5]
    chunks = split_text("😀" * 5, 9)  # 4 bytes each: two per chunk
    assert chunks == ["😀😀", "😀😀", "😀"]


def test_shorter_first_chunk_for_fast_streaming() -> None:
    text = "This is the first sentence. This is the second one. And a third."
    chunks = split_text(text, 60, first_chunk_bytes=20)
    assert nbytes(chunks[0]) <= 20 and chunks[0] == "This is the first"
    assert chunks[1:] == ["sentence. This is the second one. And a third."]


def test_whitespace_at_split_points_collapses_but_not_inside() -> None:
    assert split_text("  Hi,\n\n  there.  ", 100) == ["Hi, there."]
    assert split_text("tab\tinside words stays", 100) == ["tab\tinside words stays"]


@pytest.mark.parametrize("text", ["", "   ", "\n\t "])
def test_empty_text_gives_no_chunks(text: str) -> None:
    assert split_text(text, 50) == []


@pytest.mark.parametrize(("max_bytes", "first"), [(3, None), (10, 3), (10, 11)])
def test_bad_limits_are_rejected(max_bytes: int, first: int | None) -> None:
    with pytest.raises(ValueError):
        split_text("hello", max_bytes, first)


# ---------------------------------------------------------------- split_text properties

ALPHABET = st.sampled_from(list("abcXYZ 12\n\t\u3000.,!?;:你好世界。，！？；：😀é-'"))
texts = st.text(alphabet=ALPHABET, max_size=400) | st.text(max_size=200)


@given(texts, st.integers(4, 200), st.data())
def test_chunks_keep_every_character_in_order(text: str, max_bytes: int, data: st.DataObject) -> None:
    first = data.draw(st.none() | st.integers(4, max_bytes))
    chunks = split_text(text, max_bytes, first)
    assert no_ws("".join(chunks)) == no_ws(text)
    assert all(chunk and chunk == chunk.strip() for chunk in chunks)
    limits = [first if first is not None else max_bytes] + [max_bytes] * len(chunks)
    assert all(nbytes(chunk) <= limit for chunk, limit in zip(chunks, limits, strict=False))


@given(texts, st.integers(4, 200))
def test_a_chunk_splits_into_itself(text: str, max_bytes: int) -> None:
    for chunk in split_text(text, max_bytes):
        assert split_text(chunk, max_bytes) == [chunk]


words = st.text(alphabet=st.sampled_from(list("abcdefgh你好世界😀é")), min_size=1, max_size=8)
sentences = st.tuples(st.lists(words, min_size=1, max_size=6), st.sampled_from(list(".,!?;:。，！？；：")))


@given(st.lists(sentences, min_size=1, max_size=12), st.integers(8, 200))
def test_same_chunks_as_f5_tts_when_every_sentence_fits(
    parts: list[tuple[list[str], str]], max_bytes: int
) -> None:
    rendered = [" ".join(ws) + punct for ws, punct in parts]
    assume(all(nbytes(s) <= max_bytes for s in rendered))
    text = "".join(s + (" " if nbytes(s[-1]) == 1 else "") for s in rendered).strip()
    assert split_text(text, max_bytes) == f5_chunk_text(text, max_bytes)


# ---------------------------------------------------------------- frames and buckets


def test_estimate_frames_is_f5_tts_duration() -> None:
    # 5 s reference (469 frames at 24 kHz / hop 256), 60-byte transcript, 100 bytes to say
    assert estimate_frames(469, 60, 100, 1.0) == 469 + int(469 / 60 * 100 / 1.0)
    assert estimate_frames(469, 60, 100, 2.0) == 469 + int(469 / 60 * 100 / 2.0)


def test_short_text_is_slowed_to_speed_0_3() -> None:
    assert estimate_frames(469, 60, 9, 1.0) == 469 + int(469 / 60 * 9 / 0.3)
    assert estimate_frames(469, 60, 10, 1.0) == 469 + int(469 / 60 * 10 / 1.0)


@pytest.mark.parametrize(
    "args", [(469, 0, 10, 1.0), (469, 60, 10, 0.0), (-1, 60, 10, 1.0), (469, 60, -1, 1.0)]
)
def test_estimate_frames_rejects_bad_input(args: tuple[int, int, int, float]) -> None:
    with pytest.raises(ValueError):
        estimate_frames(*args)


@given(st.integers(1, 3000), st.integers(1, 500), st.integers(10, 2000), st.floats(0.3, 3.0))
def test_estimate_grows_with_text_shrinks_with_speed(ref: int, ref_b: int, gen: int, speed: float) -> None:
    frames = estimate_frames(ref, ref_b, gen, speed)
    assert frames >= ref
    assert estimate_frames(ref, ref_b, gen + 1, speed) >= frames
    assert estimate_frames(ref, ref_b, gen, speed * 1.5) <= frames


def test_bucket_for_examples() -> None:
    assert bucket_for(1, (256, 512)) == 256
    assert bucket_for(256, (512, 256)) == 256
    assert bucket_for(257, (256, 512)) == 512
    assert bucket_for(513, (256, 512)) is None
    assert bucket_for(10, ()) is None


@given(st.integers(0, 5000), st.lists(st.integers(1, 5000), max_size=10))
def test_bucket_for_is_the_smallest_fitting(frames: int, buckets: list[int]) -> None:
    chosen = bucket_for(frames, buckets)
    fitting = [b for b in buckets if b >= frames]
    assert chosen == (min(fitting) if fitting else None)


def test_default_buckets_example() -> None:
    assert default_buckets(2816) == (256, 384, 576, 896, 1344, 2048, 2816)
    assert default_buckets(100) == (100,)


@given(st.integers(1, 20_000), st.integers(1, 1000), st.floats(1.05, 4.0), st.sampled_from([1, 8, 64]))
def test_default_buckets_properties(max_frames: int, min_frames: int, growth: float, align: int) -> None:
    buckets = default_buckets(max_frames, min_frames=min_frames, growth=growth, align=align)
    assert buckets[-1] == max_frames
    assert list(buckets) == sorted(set(buckets))
    assert all(b % align == 0 and b >= min_frames for b in buckets[:-1])
    assert len(buckets) <= 2 + math.log(max(max_frames, 2)) / math.log(min(growth, 1 + align / 2))


def test_default_buckets_rejects_bad_growth() -> None:
    with pytest.raises(ValueError):
        default_buckets(1000, growth=1.0)


# ---------------------------------------------------------------- plan_batches

BUCKETS = (256, 512, 1024)
PLAN = {"max_batch": 4, "window_s": 0.05, "buckets": BUCKETS}


def item(
    job_id: int, arrived: float = 0.0, frames: int = 300, nfe: int = 8, deadline: float = math.inf
) -> PendingItem:
    return PendingItem(job_id, nfe, frames, arrived, deadline)


def test_nothing_pending_means_idle() -> None:
    plan = plan_batches([], 1.0, **PLAN)
    assert (plan.batches, plan.expired, plan.oversized, plan.wait_s) == ([], [], [], None)


def test_a_fresh_item_waits_for_company_until_the_window_ends() -> None:
    plan = plan_batches([item(1, arrived=10.0)], 10.01, **PLAN)
    assert plan.batches == [] and plan.wait_s == pytest.approx(0.04)
    later = plan_batches([item(1, arrived=10.0)], 10.05, **PLAN)
    assert later.batches == [Batch(512, 8, (1,))] and later.wait_s is None


def test_a_full_group_goes_at_once_and_the_rest_waits() -> None:
    pending = [item(i, arrived=10.0 + i / 1000) for i in range(6)]
    plan = plan_batches(pending, 10.01, **PLAN)
    assert plan.batches == [Batch(512, 8, (0, 1, 2, 3))]
    assert plan.wait_s == pytest.approx(10.004 + 0.05 - 10.01)


def test_groups_split_by_bucket_and_nfe_in_arrival_order() -> None:
    pending = [item(1, 0.0), item(2, 0.1, frames=100), item(3, 0.2, nfe=32), item(4, 0.3)]
    plan = plan_batches(pending, 5.0, **PLAN)
    assert plan.batches == [Batch(512, 8, (1, 4)), Batch(256, 8, (2,)), Batch(512, 32, (3,))]


def test_expired_and_oversized_items_come_back_separately() -> None:
    pending = [item(1, deadline=4.0), item(2, frames=5000), item(3, arrived=4.99)]
    plan = plan_batches(pending, 5.0, **PLAN)
    assert plan.expired == [1] and plan.oversized == [2] and plan.batches == []


def test_a_near_deadline_sends_the_group_early() -> None:
    pending = [item(1, arrived=5.0), item(2, arrived=5.0, deadline=5.3)]
    plan = plan_batches(pending, 5.0, **PLAN, deadline_margin_s=0.5)
    assert plan.batches == [Batch(512, 8, (1, 2))]
    calm = plan_batches(pending, 5.0, **{**PLAN, "window_s": 10.0}, deadline_margin_s=0.1)
    assert calm.batches == [] and calm.wait_s == pytest.approx(0.2)


def test_bad_parameters_are_rejected() -> None:
    with pytest.raises(ValueError):
        plan_batches([], 0.0, max_batch=0, window_s=0.1, buckets=BUCKETS)
    with pytest.raises(ValueError):
        plan_batches([], 0.0, max_batch=1, window_s=-1.0, buckets=BUCKETS)


pending_items = st.lists(
    st.builds(
        PendingItem,
        job_id=st.integers(0, 10**6),
        nfe=st.sampled_from([8, 16, 32]),
        frames=st.integers(1, 1500),
        arrived_s=st.floats(0.0, 10.0),
        deadline_s=st.one_of(st.just(math.inf), st.floats(0.0, 20.0)),
    ),
    max_size=40,
    unique_by=lambda i: i.job_id,
)


@given(pending_items, st.floats(0.0, 15.0), st.integers(1, 8), st.floats(0.0, 2.0), st.floats(0.0, 1.0))
def test_plan_partitions_the_queue_and_respects_the_rules(
    pending: list[PendingItem], now: float, max_batch: int, window: float, margin: float
) -> None:
    plan = plan_batches(
        pending, now, max_batch=max_batch, window_s=window, buckets=BUCKETS, deadline_margin_s=margin
    )
    by_id = {i.job_id: i for i in pending}
    dispatched = [j for b in plan.batches for j in b.job_ids]
    placed = dispatched + plan.expired + plan.oversized
    assert len(placed) == len(set(placed)) and set(placed) <= set(by_id)
    waiting = [i for i in pending if i.job_id not in set(placed)]
    for batch in plan.batches:
        members = [by_id[j] for j in batch.job_ids]
        assert 1 <= len(members) <= max_batch
        assert all(m.nfe == batch.nfe and bucket_for(m.frames, BUCKETS) == batch.bucket for m in members)
        assert [m.arrived_s for m in members] == sorted(m.arrived_s for m in members)
        assert all(m.deadline_s > now for m in members)
    oldest = [min(by_id[j].arrived_s for j in b.job_ids) for b in plan.batches]
    assert oldest == sorted(oldest)
    for w in waiting:  # never starve: nothing old or urgent is left waiting
        assert now - w.arrived_s < window and w.deadline_s - now > margin
        assert bucket_for(w.frames, BUCKETS) is not None
    assert (plan.wait_s is None) == (not waiting)
    if plan.wait_s is not None:
        assert 0 < plan.wait_s <= window


@given(
    st.lists(st.tuples(st.floats(0.0, 5.0), st.integers(1, 1000), st.sampled_from([8, 32])), max_size=30),
    st.integers(1, 6),
    st.floats(0.001, 1.0),
)
def test_simulated_queue_dispatches_everyone_within_the_window(
    arrivals: list[tuple[float, int, int]], max_batch: int, window: float
) -> None:
    items = sorted((PendingItem(n, nfe, frames, t) for n, (t, frames, nfe) in enumerate(arrivals)),
                   key=lambda i: i.arrived_s)  # fmt: skip
    now, queue, sent_at = 0.0, list[PendingItem](), dict[int, float]()
    future = list(items)
    for _ in range(10_000):  # bounded: a planner that never advances time fails instead of hanging
        if not (future or queue):
            break
        queue += [i for i in future if i.arrived_s <= now]
        future = [i for i in future if i.arrived_s > now]
        plan = plan_batches(queue, now, max_batch=max_batch, window_s=window, buckets=BUCKETS)
        for batch in plan.batches:
            sent_at.update(dict.fromkeys(batch.job_ids, now))
        queue = [i for i in queue if i.job_id not in sent_at]
        wakeups = [now + plan.wait_s] if plan.wait_s is not None else []
        now = min(wakeups + [i.arrived_s for i in future], default=now)
    assert set(sent_at) == {i.job_id for i in items}
    assert all(sent_at[i.job_id] - i.arrived_s <= window + 1e-9 for i in items)


def test_batch_buckets_examples() -> None:
    assert batch_buckets(1) == (1,)
    assert batch_buckets(3) == (1, 2, 3)
    assert batch_buckets(8) == (1, 2, 4, 8)
    assert batch_buckets(10) == (1, 2, 4, 8, 10)
    assert batch_buckets(12) == (1, 2, 4, 8, 12)
    assert batch_buckets(32) == (1, 2, 4, 8, 16, 32)
    with pytest.raises(ValueError):
        batch_buckets(0)


@given(st.integers(1, 256))
def test_batch_buckets_pad_little(max_batch: int) -> None:
    sizes = batch_buckets(max_batch)
    assert sizes[0] == 1 and sizes[-1] == max_batch and list(sizes) == sorted(set(sizes))
    for items in range(1, max_batch + 1):
        rows = bucket_for(items, sizes)
        assert rows is not None and items <= rows
        assert rows < 2 * items
