"""engine/posconv.py: the GEMM form of the DiT's position convolution equals f5-tts's conv1d."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from f5_tts.model.modules import ConvPositionEmbedding  # noqa: E402

from ishowttsd.engine.f5 import F5Engine  # noqa: E402
from ishowttsd.engine.posconv import GemmConvPositionEmbedding  # noqa: E402
from ishowttsd.engine.protocol import VoiceRef  # noqa: E402
from ishowttsd.engine.spec import EngineSpec  # noqa: E402
from ishowttsd.voices import find_default_reference  # noqa: E402

TRANSCRIPT = "Some call me nature, others call me mother nature."


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize(("dim", "kernel", "groups", "frames"), [(1024, 31, 16, 97), (64, 7, 4, 33), (32, 31, 2, 8)])
def test_gemm_module_equals_conv1d_with_and_without_mask(dim: int, kernel: int, groups: int, frames: int) -> None:
    torch.manual_seed(dim + frames)
    original = ConvPositionEmbedding(dim, kernel, groups).eval()
    gemm = GemmConvPositionEmbedding(original).eval()
    x = torch.randn(3, frames, dim)
    mask = torch.ones(3, frames, dtype=torch.bool)
    mask[1, frames // 2:] = False
    with torch.inference_mode():
        assert relative(gemm(x, mask), original(x, mask)) < 1e-5
        assert relative(gemm(x), original(x)) < 1e-5
        assert float(gemm(x, mask)[1, frames // 2:].abs().max()) == 0.0  # masked frames stay zero


def test_tiny_engine_with_gemm_conv_matches_conv1d_for_the_same_noise(tmp_path: Path) -> None:
    engines = [F5Engine.load(EngineSpec(model="tiny", cache_dir=str(tmp_path), position_conv=impl))
               for impl in ("conv1d", "gemm")]
    assert sum(isinstance(m, GemmConvPositionEmbedding) for m in engines[1].model.modules()) >= 1
    assert not any(isinstance(m, GemmConvPositionEmbedding) for m in engines[0].model.modules())
    voice = VoiceRef("default", str(find_default_reference()), TRANSCRIPT)
    mels = []
    for engine in engines:
        ref = engine.reference(voice)
        mels.append(engine.sample([ref], ["Test one two."], [ref.mel.shape[0] + 120], 8,
                                  [torch.Generator().manual_seed(7)])[0])
    assert relative(mels[1], mels[0]) < 1e-5


def test_auto_runs_the_gemm_form_for_small_batches_and_conv1d_above() -> None:
    from ishowttsd.engine.posconv import AutoConvPositionEmbedding

    torch.manual_seed(5)
    original = ConvPositionEmbedding(64, 7, 4).eval()
    auto = AutoConvPositionEmbedding(original, max_rows=2).eval()
    calls: list[str] = []
    auto.gemm.register_forward_hook(lambda *_: calls.append("gemm"))
    original.register_forward_hook(lambda *_: calls.append("conv1d"))
    with torch.inference_mode():
        for rows in (1, 2, 3):
            x = torch.randn(rows, 20, 64)
            assert relative(auto(x), original(x)) < 1e-5
    # each round: auto's own call, then the reference's conv1d
    assert calls == ["gemm", "conv1d", "gemm", "conv1d", "conv1d", "conv1d"]


def test_use_position_conv_rejects_an_unknown_form() -> None:
    from ishowttsd.engine.posconv import use_position_conv

    with pytest.raises(ValueError, match="position_conv must be one of"):
        use_position_conv(torch.nn.Linear(2, 2), "fft")
