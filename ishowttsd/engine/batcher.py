"""Pure batching decisions (no torch): text chunks, frame estimates, shape buckets, batch plans.

The engine client asks `plan_batches` what to send now and how long to wait before asking again;
the worker pads every batch to its bucket so only warmed (compiled) shapes are ever run.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

# f5-tts's chunk_text: split after ASCII punctuation followed by whitespace, or after CJK punctuation.
_SENTENCE_END = re.compile(r"(?<=[;:,.!?])\s+|(?<=[；：，。！？])")
_MAX_CHAR_BYTES = 4  # longest UTF-8 encoding of one character
# f5-tts slows down very short texts: gen text under this many bytes is spoken at speed 0.3.
SHORT_TEXT_BYTES = 10
SHORT_TEXT_SPEED = 0.3
# A group due within this many seconds is due now (no busy wake-ups for float crumbs).
DUE_EPSILON_S = 1e-6


# ---------------------------------------------------------------- text chunks


def _nbytes(text: str) -> int:
    return len(text.encode("utf-8"))


def _fit_chars(text: str, limit: int) -> int:
    """How many leading characters of `text` fit in `limit` UTF-8 bytes."""
    used = 0
    for index, char in enumerate(text):
        used += _nbytes(char)
        if used > limit:
            return index
    return len(text)


def _cut(text: str, limit: int) -> tuple[str, str]:
    """Split a stripped `text` longer than `limit` bytes: at the last space that fits, else by bytes."""
    fit = _fit_chars(text, limit)
    space = max((i for i in range(1, min(fit, len(text) - 1) + 1) if text[i].isspace()), default=0)
    head = text[:space].rstrip() if space else ""
    if not head:
        return text[:fit], text[fit:].lstrip()
    return head, text[space:].lstrip()


def _joiner(sentence: str) -> str:
    """What follows a sentence inside a chunk: a space after a 1-byte character (f5-tts's rule)."""
    return " " if _nbytes(sentence[-1]) == 1 else ""


def _check_limits(max_bytes: int, first_chunk_bytes: int | None) -> None:
    if max_bytes < _MAX_CHAR_BYTES:
        raise ValueError(f"max_bytes must be >= {_MAX_CHAR_BYTES}, got {max_bytes}")
    if first_chunk_bytes is not None and not _MAX_CHAR_BYTES <= first_chunk_bytes <= max_bytes:
        raise ValueError(f"first_chunk_bytes must be in {_MAX_CHAR_BYTES}..{max_bytes}: {first_chunk_bytes}")


@dataclass
class _Chunker:
    """Greedy packer of sentences into byte-limited chunks (the first may have its own limit)."""

    max_bytes: int
    first_chunk_bytes: int | None
    chunks: list[str] = field(default_factory=list)
    current: str = ""

    def limit(self) -> int:
        """The byte limit of the chunk being filled."""
        if self.first_chunk_bytes is not None and not self.chunks:
            return self.first_chunk_bytes
        return self.max_bytes

    def add(self, sentence: str) -> None:
        """Append a stripped sentence to the current chunk, or start new chunks for it."""
        if self.current and _nbytes(self.current + sentence) <= self.limit():
            self.current += sentence + _joiner(sentence)
            return
        self.flush()
        while _nbytes(sentence) > self.limit():
            head, sentence = _cut(sentence, self.limit())
            self.chunks.append(head)
        self.current = sentence + _joiner(sentence)

    def flush(self) -> None:
        """Close the current chunk."""
        if self.current.strip():
            self.chunks.append(self.current.rstrip())
        self.current = ""


def split_text(text: str, max_bytes: int, first_chunk_bytes: int | None = None) -> list[str]:
    """Split `text` into chunks of at most `max_bytes` UTF-8 bytes (the first: `first_chunk_bytes`).

    Sentences (f5-tts's chunk_text boundaries) are packed greedily; a sentence too long for a chunk
    is split at the last whitespace that fits, a word too long at a character boundary. Characters
    are never lost or reordered; only whitespace at split points is collapsed (to one space between
    sentences ending in a 1-byte character, as f5-tts does). A shorter first chunk starts streaming
    sooner. Empty or all-whitespace text gives [].
    """
    _check_limits(max_bytes, first_chunk_bytes)
    chunker = _Chunker(max_bytes, first_chunk_bytes)
    for sentence in _SENTENCE_END.split(text):
        if sentence.strip():
            chunker.add(sentence.strip())
    chunker.flush()
    return chunker.chunks


# ---------------------------------------------------------------- frames and buckets


def estimate_frames(ref_frames: int, ref_text_bytes: int, gen_text_bytes: int, speed: float) -> int:
    """Total mel frames (reference + generated), f5-tts's duration formula.

    ref_frames + int(ref_frames / ref_text_bytes * gen_text_bytes / speed), with speed 0.3 when the
    generated text is under 10 bytes. `ref_text_bytes` counts the space f5-tts appends to a reference
    text ending in a 1-byte character.
    """
    if ref_frames < 0 or ref_text_bytes <= 0 or gen_text_bytes < 0 or speed <= 0:
        raise ValueError("need ref_frames >= 0, ref_text_bytes > 0, gen_text_bytes >= 0, speed > 0")
    local_speed = SHORT_TEXT_SPEED if gen_text_bytes < SHORT_TEXT_BYTES else speed
    return ref_frames + int(ref_frames / ref_text_bytes * gen_text_bytes / local_speed)


def bucket_for(frames: int, buckets: Sequence[int]) -> int | None:
    """The smallest bucket >= frames; None when the item is longer than every bucket."""
    return min((b for b in buckets if b >= frames), default=None)


def _align_up(value: float, align: int) -> int:
    return math.ceil(value / align) * align


def default_buckets(
    max_frames: int, *, min_frames: int = 256, growth: float = 1.5, align: int = 64
) -> tuple[int, ...]:
    """Geometric shape buckets from `min_frames` to exactly `max_frames`; all but the last align.

    Fewer buckets mean fewer compiled shapes (each costs ~20 s to compile, measured); growth 1.5
    bounds padding waste to one third of a bucket. 24 kHz / hop 256 = 93.75 frames per second.
    """
    if min_frames < 1 or align < 1 or growth <= 1.0 or max_frames < 1:
        raise ValueError("need max_frames >= 1, min_frames >= 1, align >= 1, growth > 1")
    buckets: list[int] = []
    size = _align_up(min_frames, align)
    while size < max_frames:
        buckets.append(size)
        size = max(_align_up(size * growth, align), size + align)
    return (*buckets, max_frames)


# ---------------------------------------------------------------- batch plans

# A streamed job's next chunk is wanted this long before its listener runs out of audio: about one
# batch's time on the device, so that the chunk is ready when it is needed ([engine] stream_margin_ms).
STREAM_MARGIN_S = 0.5


def needed_at(arrived_s: float, first_audio_s: float | None, audio_sent_s: float, *, stream: bool,
              margin_s: float = STREAM_MARGIN_S) -> float:
    """When a job's next chunk is needed (monotonic seconds): the most needed chunks run first.

    A buffered answer needs all its chunks at once: at its arrival. So does a stream's first chunk
    (nothing sent yet: `first_audio_s` is None). A stream's later chunk is needed when its listener,
    who began hearing at `first_audio_s` and has been sent `audio_sent_s` seconds of audio, runs
    out, less `margin_s`.
    """
    if not stream or first_audio_s is None:
        return arrived_s
    return first_audio_s + audio_sent_s - margin_s


@dataclass(frozen=True, slots=True)
class PendingItem:
    """One chunk waiting for synthesis (monotonic seconds); `deadline_s` = math.inf when it has none.

    `needed_s` is when its audio is needed (see needed_at); left out (NaN), it is `arrived_s`.
    """

    job_id: int
    nfe: int
    frames: int
    arrived_s: float
    deadline_s: float = math.inf
    needed_s: float = math.nan

    def __post_init__(self) -> None:
        if math.isnan(self.needed_s):
            object.__setattr__(self, "needed_s", self.arrived_s)


def need_order(item: PendingItem) -> tuple[float, float, int]:
    """Sort key: most needed first; ties go to the older item, then the lower job id."""
    return (item.needed_s, item.arrived_s, item.job_id)


@dataclass(frozen=True, slots=True)
class Batch:
    """Items synthesised together: same NFE, padded to the same bucket; most needed first."""

    bucket: int
    nfe: int
    job_ids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class BatchPlan:
    """What to dispatch now (most needed first), what to fail, and when to decide again (None = idle)."""

    batches: list[Batch]
    expired: list[int]  # deadline already passed: answer 504
    oversized: list[int]  # longer than the largest bucket: the caller must split or reject
    wait_s: float | None


@dataclass(frozen=True, slots=True)
class _Group:
    bucket: int
    nfe: int
    items: tuple[PendingItem, ...]  # most needed first, at most max_batch


def _groups(items: Sequence[PendingItem], buckets: Sequence[int], max_batch: int) -> list[_Group]:
    """Items grouped by (bucket, nfe), most needed first, cut into groups of at most max_batch."""
    by_key: dict[tuple[int, int], list[PendingItem]] = {}
    for item in sorted(items, key=need_order):
        bucket = bucket_for(item.frames, buckets)
        if bucket is not None:
            by_key.setdefault((bucket, item.nfe), []).append(item)
    return [
        _Group(bucket, nfe, tuple(group[start : start + max_batch]))
        for (bucket, nfe), group in by_key.items()
        for start in range(0, len(group), max_batch)
    ]


def _due_in(group: _Group, now_s: float, max_batch: int, window_s: float, margin_s: float,
            hold_until_s: float) -> float:
    """Seconds until `group` must go (<= 0: now): when full, when its oldest waited window_s and
    the hold is over, or when its earliest deadline is within margin_s."""
    if len(group.items) >= max_batch:
        return 0.0
    oldest_s = min(i.arrived_s for i in group.items)
    by_age = window_s - max(0.0, now_s - oldest_s)  # an arrival "in the future" counts as now
    by_deadline = min(i.deadline_s for i in group.items) - margin_s - now_s
    return min(max(by_age, hold_until_s - now_s), by_deadline)


def plan_batches(
    pending: Sequence[PendingItem],
    now_s: float,
    *,
    max_batch: int,
    window_s: float,
    buckets: Sequence[int],
    deadline_margin_s: float = 0.5,
    hold_until_s: float = -math.inf,
) -> BatchPlan:
    """Decide which batches to dispatch now and how long to wait before deciding again.

    Items are grouped by (bucket, nfe); a group goes when full, when its oldest item has waited
    `window_s`, or when a deadline is within `deadline_margin_s`. A group larger than max_batch is
    cut most needed first (`needed_s`), and batches come out in order of their most needed item:
    a stream's first chunk goes before chunks of streams whose listeners still have audio in hand.
    Until `hold_until_s` only full groups (and deadlines) go: a busy worker waits for a fuller batch.
    Nothing waits more than window_s (or the hold) to be dispatched; items whose deadline has passed
    come back in `expired`, too-long ones in `oversized`.
    """
    if max_batch < 1 or window_s < 0:
        raise ValueError(f"need max_batch >= 1 and window_s >= 0, got {max_batch}, {window_s}")
    expired = [i.job_id for i in pending if i.deadline_s <= now_s]
    live = [i for i in pending if i.deadline_s > now_s]
    oversized = [i.job_id for i in live if bucket_for(i.frames, buckets) is None]
    groups = _groups(live, buckets, max_batch)
    timing = [(g, _due_in(g, now_s, max_batch, window_s, deadline_margin_s, hold_until_s)) for g in groups]
    due = sorted((g for g, t in timing if t <= DUE_EPSILON_S), key=lambda g: need_order(g.items[0]))
    waits = [t for _, t in timing if t > DUE_EPSILON_S]
    return BatchPlan(
        batches=[Batch(g.bucket, g.nfe, tuple(i.job_id for i in g.items)) for g in due],
        expired=expired,
        oversized=oversized,
        wait_s=min(waits) if waits else None,
    )


# ---------------------------------------------------------------- batch-size buckets


def batch_buckets(max_batch: int) -> tuple[int, ...]:
    """Batch sizes a compiled engine is warmed for: powers of two below max_batch, then max_batch.

    A batch of n items runs padded to bucket_for(n, batch_buckets(max_batch)) rows. Every bucket is
    warmed before Ready; finer row buckets were measured on the H100 (every 4 or 8 rows above 8): no
    visible throughput gain through the daemon at c=32, and 17-45 s more cold start (75 -> 91-119 s).
    """
    if max_batch < 1:
        raise ValueError(f"need max_batch >= 1, got {max_batch}")
    sizes = [1 << k for k in range(max_batch.bit_length()) if 1 << k < max_batch]
    return (*sizes, max_batch)
