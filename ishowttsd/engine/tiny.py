"""Build small (or random-weight) F5 checkpoints through f5-tts's own classes.

The tiny model is what the tests and the offline demo load: a real f5-tts DiT + CFM and a real
Vocos, saved in the same formats as the published checkpoints and loaded by the same code path
(`load_model` / `load_vocoder`). Its weights are random, so it speaks noise.

`random:F5TTS_v1_Base` builds the full-size architecture with random weights: speed depends on
shapes, not values, so benchmarks can run without the real checkpoint (their output says so).

This module (and engine/f5.py) are the only ones that import torch, f5_tts and vocos.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from importlib.resources import files
from pathlib import Path

import torch
import yaml
from f5_tts.model import CFM, DiT
from f5_tts.model.utils import get_tokenizer
from vocos import Vocos

TINY_DIT = {"dim": 64, "depth": 2, "heads": 2, "ff_mult": 2, "text_dim": 32, "conv_layers": 1}
TINY_VOCOS = {"dim": 64, "intermediate_dim": 128, "num_layers": 2}
BASE_VOCOS = {"dim": 512, "intermediate_dim": 1536, "num_layers": 8}
MEL = {"sample_rate": 24000, "n_fft": 1024, "hop_length": 256, "n_mels": 100}
REINIT_STD = 0.05
FORMAT_VERSION = 1


@dataclass(frozen=True)
class BuiltModel:
    """Where a built checkpoint lives and the DiT arguments it was built with."""

    ckpt_path: Path
    vocab_file: Path
    vocoder_dir: Path
    model_cfg: dict[str, int]


def shipped_vocab() -> Path:
    return Path(str(files("f5_tts").joinpath("infer/examples/vocab.txt")))


def base_arch() -> dict[str, int]:
    """The F5TTS_v1_Base DiT arguments, read from the config f5-tts ships."""
    cfg = yaml.safe_load(files("f5_tts").joinpath("configs/F5TTS_v1_Base.yaml").read_text())
    arch = dict(cfg["model"]["arch"])
    keep = ("dim", "depth", "heads", "ff_mult", "text_dim", "text_mask_padding", "qk_norm", "conv_layers",
            "pe_attn_head")
    return {k: arch[k] for k in keep}


def vocos_config(dims: dict[str, int]) -> dict[str, object]:
    """A Vocos config.yaml body in the layout of charactr/vocos-mel-24khz."""
    return {
        "feature_extractor": {
            "class_path": "vocos.feature_extractors.MelSpectrogramFeatures",
            "init_args": {**MEL, "padding": "center"},
        },
        "backbone": {
            "class_path": "vocos.models.VocosBackbone",
            "init_args": {"input_channels": MEL["n_mels"], **dims},
        },
        "head": {
            "class_path": "vocos.heads.ISTFTHead",
            "init_args": {"dim": dims["dim"], "n_fft": MEL["n_fft"], "hop_length": MEL["hop_length"],
                          "padding": "center"},
        },
    }


def rerandomise_zero_weights(module: torch.nn.Module, generator: torch.Generator) -> None:
    """f5-tts zero-initialises proj_out and adaLN, so a fresh DiT outputs exactly zero: fix that."""
    with torch.no_grad():
        for param in module.parameters():
            if param.numel() > 1 and not torch.any(param):
                param.copy_(torch.randn(param.shape, generator=generator) * REINIT_STD)


def build_cfm(model_cfg: dict[str, int], vocab_file: Path, seed: int) -> CFM:
    torch.manual_seed(seed)
    vocab_char_map, vocab_size = get_tokenizer(str(vocab_file), "custom")
    transformer = DiT(**model_cfg, text_num_embeds=vocab_size, mel_dim=MEL["n_mels"])
    model = CFM(transformer=transformer, vocab_char_map=vocab_char_map)
    rerandomise_zero_weights(model, torch.Generator().manual_seed(seed))
    return model


def save_checkpoint(model: CFM, path: Path) -> None:
    """Save as the published checkpoints are: {"ema_model_state_dict": {"ema_model.<k>": v}}."""
    state = {f"ema_model.{k}": v for k, v in model.state_dict().items()}
    torch.save({"ema_model_state_dict": state}, path)


def save_vocoder(dims: dict[str, int], directory: Path, seed: int) -> None:
    config = vocos_config(dims)
    (directory / "config.yaml").write_text(yaml.safe_dump(config))
    torch.manual_seed(seed)
    vocoder = Vocos.from_hparams(str(directory / "config.yaml"))
    torch.save(vocoder.state_dict(), directory / "pytorch_model.bin")


def fingerprint(model_cfg: dict[str, int], vocos_dims: dict[str, int], seed: int) -> str:
    blob = json.dumps([FORMAT_VERSION, model_cfg, vocos_dims, seed], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def build_model(root: Path, model_cfg: dict[str, int], vocos_dims: dict[str, int], seed: int = 0) -> BuiltModel:
    """Build (once) a checkpoint + vocoder dir under root/<fingerprint>; later calls reuse it.

    The directory appears atomically (built in a temp dir, then renamed), so a crash mid-build
    leaves nothing that a later start would mistake for a finished model.
    """
    target = root / fingerprint(model_cfg, vocos_dims, seed)
    built = BuiltModel(target / "model.pt", shipped_vocab(), target / "vocos", dict(model_cfg))
    if (target / "built.json").exists():
        return built
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".build-", dir=root))
    os.chmod(tmp, 0o755)
    try:
        (tmp / "vocos").mkdir()
        save_checkpoint(build_cfm(model_cfg, built.vocab_file, seed), tmp / "model.pt")
        save_vocoder(vocos_dims, tmp / "vocos", seed)
        (tmp / "built.json").write_text(json.dumps({**asdict(built), "seed": seed}, default=str))
        _fsync_tree(tmp)
        os.replace(tmp, target)
    except OSError:
        if target.exists():  # another process finished the same build first
            shutil.rmtree(tmp, ignore_errors=True)
            return built
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return built


def build_tiny(root: Path, seed: int = 0) -> BuiltModel:
    return build_model(root / "tiny", TINY_DIT, TINY_VOCOS, seed)


def build_random_base(root: Path, seed: int = 0) -> BuiltModel:
    return build_model(root / "random-F5TTS_v1_Base", base_arch(), BASE_VOCOS, seed)


def _fsync_tree(directory: Path) -> None:
    for path in directory.rglob("*"):
        if path.is_file():
            with path.open("rb") as handle:
                os.fsync(handle.fileno())


def main() -> None:
    """`python -m ishowttsd.engine.tiny DIR` builds the tiny model into DIR and prints its paths."""
    import sys

    built = build_tiny(Path(sys.argv[1] if len(sys.argv) > 1 else "."))
    print(json.dumps(asdict(built), default=str, indent=2))


if __name__ == "__main__":
    main()
