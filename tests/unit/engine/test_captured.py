"""compile_scope "captured": the fixed-width text embedding and the static-buffer step plumbing (CPU, no graphs).

On a CPU device CapturedGraphs runs the functions it would capture directly, so everything but the
CUDA graph itself (checked on the GPU: docs/benchmarks.md) runs here against the uncaptured path.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from ishowttsd.engine.captured import CapturedGraphs, direct_capture  # noqa: E402
from ishowttsd.engine.f5 import F5Engine  # noqa: E402
from ishowttsd.engine.flow import text_embedding_fixed, text_embeddings, tokens_to_width  # noqa: E402
from ishowttsd.engine.protocol import VoiceRef  # noqa: E402
from ishowttsd.engine.shapes import Shapes  # noqa: E402
from ishowttsd.engine.spec import EngineSpec  # noqa: E402
from ishowttsd.voices import find_default_reference  # noqa: E402

TRANSCRIPT = "Some call me nature, others call me mother nature."


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> F5Engine:
    return F5Engine.load(EngineSpec(model="tiny", cache_dir=str(tmp_path_factory.mktemp("models"))))


def test_tokens_are_padded_with_minus_one_or_cut_to_the_width() -> None:
    tokens = torch.tensor([[3, 4, 5], [6, -1, -1]])
    assert tokens_to_width(tokens, 5).tolist() == [[3, 4, 5, -1, -1], [6, -1, -1, -1, -1]]
    assert tokens_to_width(tokens, 2).tolist() == [[3, 4], [6, -1]]


@pytest.mark.parametrize("drop_text", [False, True])
def test_fixed_width_text_embedding_is_each_row_embedded_alone(engine: F5Engine, drop_text: bool) -> None:
    dit, width = engine.model.transformer, 96
    tokens = torch.randint(0, 30, (3, 40), generator=torch.Generator().manual_seed(1))
    tokens[1, 25:] = -1  # a shorter text in the batch
    lens = [70, 50, 20]  # the third row is shorter than its text: cut, as f5-tts does
    valid = torch.arange(width)[None, :] < torch.tensor(lens)[:, None]
    with torch.inference_mode():
        mine = text_embedding_fixed(dit.text_embed, tokens_to_width(tokens, width), valid, drop_text)
        alone = [text_embeddings(dit, tokens[i : i + 1], None, n)[1 if drop_text else 0] for i, n in enumerate(lens)]
    assert mine.shape == (3, width, dit.text_embed.text_embed.embedding_dim)
    for row, (n, theirs) in enumerate(zip(lens, alone, strict=True)):
        torch.testing.assert_close(mine[row, :n], theirs[0], rtol=1e-5, atol=1e-5)
        assert torch.count_nonzero(mine[row, n:]) == 0
    assert torch.count_nonzero(mine[0, :70]) > 0


def test_captured_buckets_sample_what_the_uncaptured_path_samples(engine: F5Engine) -> None:
    ref = engine.reference(VoiceRef("default", str(find_default_reference()), TRANSCRIPT))
    frames = [ref.mel.shape[0] + 60, ref.mel.shape[0] + 140]
    width = frames[1] + 30
    texts = ["Short one.", "A somewhat longer second line."]

    def run(nfe: int) -> list[torch.Tensor]:
        return engine.sample([ref, ref], texts, frames, nfe, [torch.Generator().manual_seed(s) for s in (1, 2)])

    engine.shapes = Shapes(widths=(width,), rows=(2,))
    try:
        plain = {nfe: run(nfe) for nfe in (4, 8)}
        engine.captured = CapturedGraphs(engine.model.transformer, engine.step_eager, engine.rotary, engine.device,
                                         engine.dtype, direct_capture)
        engine.captured.add(2, width)
        captured = {nfe: run(nfe) for nfe in (4, 8)}
    finally:
        engine.shapes, engine.captured = None, None
    for nfe in (4, 8):  # one step graph serves every NFE: t and dt come from its buffer
        for mine, theirs in zip(captured[nfe], plain[nfe], strict=True):
            assert mine.shape == theirs.shape
            assert float((mine - theirs).norm() / theirs.norm()) < 1e-5
    assert float((captured[4][0] - captured[8][0]).norm()) > 0


def test_a_bucket_not_captured_runs_uncaptured(engine: F5Engine) -> None:
    engine.captured = CapturedGraphs(engine.model.transformer, engine.step_eager, engine.rotary, engine.device,
                                     engine.dtype, direct_capture)
    try:
        assert not engine.captured.has(1, 300)
        ref = engine.reference(VoiceRef("default", str(find_default_reference()), TRANSCRIPT))
        out = engine.sample([ref], ["Hi."], [ref.mel.shape[0] + 40], 4, [torch.Generator().manual_seed(3)])
    finally:
        engine.captured = None
    assert out[0].shape == (40, 100)
