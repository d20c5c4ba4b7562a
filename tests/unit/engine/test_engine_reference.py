"""The engine's own sampling loop against f5-tts's CFM.sample, and the tiny checkpoint builder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from f5_tts.model.utils import convert_char_to_pinyin  # noqa: E402

from ishowttsd.engine.f5 import F5Engine  # noqa: E402
from ishowttsd.engine.protocol import Job, VoiceRef  # noqa: E402
from ishowttsd.engine.spec import EngineSpec  # noqa: E402
from ishowttsd.engine.tiny import build_tiny  # noqa: E402
from ishowttsd.voices import find_default_reference  # noqa: E402

TRANSCRIPT = "Some call me nature, others call me mother nature."


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> F5Engine:
    return F5Engine.load(EngineSpec(model="tiny", cache_dir=str(tmp_path_factory.mktemp("models"))))


@pytest.fixture(scope="module")
def voice() -> VoiceRef:
    return VoiceRef("default", str(find_default_reference()), TRANSCRIPT)


def synthesize(engine: F5Engine, text: str, seed: int, voice: VoiceRef) -> np.ndarray:
    pieces: list[bytes] = []
    engine.synthesize(Job(1, text, voice, 8, 1.0, seed), pieces.append, lambda: None)
    return np.frombuffer(b"".join(pieces), dtype="<i2")


def test_own_loop_matches_cfm_sample_for_the_same_noise(engine: F5Engine, voice: VoiceRef) -> None:
    ref = engine.reference(voice)
    frames = ref.mel.shape[0] + 120
    mine = engine.sample([ref], ["Test one two."], [frames], 8, [torch.Generator().manual_seed(7)])[0]
    with torch.inference_mode():
        text = convert_char_to_pinyin([ref.text + "Test one two."])
        theirs, _ = engine.model.sample(cond=ref.mel.unsqueeze(0), text=text, duration=frames, steps=8,
                                        cfg_strength=2.0, sway_sampling_coef=-1.0, seed=7)
    theirs = theirs[0, ref.mel.shape[0]:]
    assert mine.shape == theirs.shape == (120, 100)
    assert float((mine - theirs).norm() / theirs.norm()) < 1e-5


def test_batched_sampling_matches_one_by_one(engine: F5Engine, voice: VoiceRef) -> None:
    ref = engine.reference(voice)
    texts, frames = ["Short one.", "A somewhat longer second line."], [ref.mel.shape[0] + 60, ref.mel.shape[0] + 140]
    batched = engine.sample([ref, ref], texts, frames, 8, [torch.Generator().manual_seed(s) for s in (1, 2)])
    single = [engine.sample([ref], [t], [f], 8, [torch.Generator().manual_seed(s)])[0]
              for t, f, s in zip(texts, frames, (1, 2), strict=True)]
    for b, s in zip(batched, single, strict=True):
        assert b.shape == s.shape
        # Padding is masked in the convolutions and in attention: only float32 rounding differs
        # (measured 1.1e-6 relative on the tiny model).
        assert float((b - s).norm() / s.norm()) < 1e-4


def test_padding_to_warmed_buckets_does_not_change_the_output(engine: F5Engine, voice: VoiceRef) -> None:
    from ishowttsd.engine.shapes import Shapes

    ref = engine.reference(voice)
    frames = ref.mel.shape[0] + 90
    exact = engine.sample([ref], ["Bucket test."], [frames], 8, [torch.Generator().manual_seed(4)])[0]
    engine.shapes = Shapes(widths=(frames + 37, frames + 400), rows=(1, 4))
    try:
        assert engine.padded_shape(frames, 3) == (frames + 37, 4, True)
        padded = engine.sample([ref], ["Bucket test."], [frames], 8, [torch.Generator().manual_seed(4)])[0]
    finally:
        engine.shapes = None
    assert padded.shape == exact.shape
    assert float((padded - exact).norm() / exact.norm()) < 1e-4


def test_output_is_reproducible_per_seed_and_not_silent(engine: F5Engine, voice: VoiceRef) -> None:
    first, again, other = (synthesize(engine, "Hello chat.", s, voice) for s in (5, 5, 6))
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)
    assert np.sqrt(np.mean((first / 32768.0) ** 2)) > 1e-3


def test_global_rng_is_left_alone(engine: F5Engine, voice: VoiceRef) -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    synthesize(engine, "Does not touch the global generator.", 9, voice)
    assert torch.equal(torch.rand(3), expected)


def test_long_text_is_chunked_and_cross_faded(engine: F5Engine, voice: VoiceRef) -> None:
    sentence = "This sentence is about sixty bytes long, give or take a few. "
    one = synthesize(engine, sentence, 3, voice)
    four = synthesize(engine, sentence * 4, 3, voice)
    overlap = int(engine.spec.crossfade_ms * 24)
    assert abs(len(four) - (4 * len(one) - 3 * overlap)) < 0.2 * len(four)  # 4 chunks, 3 cross-fades


def test_tiny_builder_is_idempotent_and_rerandomises_zero_weights(tmp_path: Path) -> None:
    first = build_tiny(tmp_path)
    again = build_tiny(tmp_path)
    assert first == again
    state = torch.load(first.ckpt_path, map_location="cpu", weights_only=True)["ema_model_state_dict"]
    proj_out = [v for k, v in state.items() if "proj_out.weight" in k]
    assert proj_out and all(torch.any(v != 0) for v in proj_out)
    assert (first.vocoder_dir / "config.yaml").exists() and (first.vocoder_dir / "pytorch_model.bin").exists()
    assert not list(tmp_path.glob("tiny/.build-*"))
