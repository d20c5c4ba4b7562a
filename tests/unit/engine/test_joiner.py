"""Cross-fade joining and PCM conversion (numpy only)."""

from __future__ import annotations

import numpy as np
import pytest

from ishowttsd.engine.joiner import CrossfadeJoiner, to_pcm16


def reference_pcm16(audio: np.ndarray) -> bytes:
    """The conversion as first written: clip in float32, scale, truncate to little-endian int16."""
    return (np.clip(np.asarray(audio, dtype=np.float32), -1.0, 1.0) * 32767.0).astype("<i2").tobytes()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_to_pcm16_clips_scales_and_matches_the_reference(dtype: type) -> None:
    audio = np.random.default_rng(3).uniform(-1.5, 1.5, 24_001).astype(dtype)
    pcm = to_pcm16(audio)
    assert pcm == reference_pcm16(audio)
    samples = np.frombuffer(pcm, dtype="<i2")
    assert samples.max() <= 32767 and samples.min() >= -32767
    extremes = np.array([32767, -32767, 32767, -32767, 0], "<i2").tobytes()
    assert to_pcm16(np.array([1.0, -1.0, 2.0, -2.0, 0.0])) == extremes


def test_to_pcm16_leaves_its_input_alone() -> None:
    audio = np.array([0.5, 2.0, -3.0], dtype=np.float32)
    to_pcm16(audio)
    assert audio.tolist() == [0.5, 2.0, -3.0]


@pytest.mark.parametrize("sizes", [[1000], [1000, 800], [500, 50, 700], [10, 10]])
def test_push_last_equals_push_then_finish(sizes: list[int]) -> None:
    rng = np.random.default_rng(len(sizes))
    pieces = [rng.uniform(-1, 1, n).astype(np.float32) for n in sizes]
    plain, fast = CrossfadeJoiner(120), CrossfadeJoiner(120)
    expected = [plain.push(piece) for piece in pieces[:-1]]
    got = [fast.push(piece) for piece in pieces[:-1]]
    expected.append(np.concatenate([plain.push(pieces[-1]), plain.finish()]))
    got.append(fast.push_last(pieces[-1]))
    for want, have in zip(expected, got, strict=True):
        np.testing.assert_array_equal(want, have)
    assert len(fast.finish()) == 0


def test_joined_length_is_the_sum_minus_one_overlap_per_join() -> None:
    joiner = CrossfadeJoiner(100)
    total = len(joiner.push(np.ones(1000))) + len(joiner.push(np.ones(900))) + len(joiner.push_last(np.ones(800)))
    assert total == 1000 + 900 + 800 - 2 * 100
