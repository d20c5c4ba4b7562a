"""Where the engine's files come from and which device/dtype it runs on (torch, no model code)."""

from __future__ import annotations

from pathlib import Path

import torch

from ishowttsd.engine import tiny
from ishowttsd.engine.spec import BASE, RANDOM_PREFIX, TINY, EngineSpec

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
HUB_CKPT = ("SWivid/F5-TTS", "F5TTS_v1_Base/model_1250000.safetensors")
HUB_VOCOS = "charactr/vocos-mel-24khz"


class BootError(Exception):
    """The engine cannot load (missing or broken weights, bad device): not worth restarting."""


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise BootError(f"device {name!r} requested but CUDA is not available")
    return torch.device(name)


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    if name != "auto":
        return DTYPES[name]
    if device.type == "cuda" and torch.cuda.get_device_properties(device).major >= 7:
        return torch.float16
    return torch.float32


def hub_file(repo: str, filename: str, allow_download: bool) -> Path:
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(repo, filename, local_files_only=not allow_download))
    except Exception as exc:
        hint = "" if allow_download else " (allow_download = false: only the local hub cache is searched)"
        raise BootError(f"cannot get {repo}/{filename}{hint}: {exc}") from exc


def resolve_files(spec: EngineSpec) -> tuple[Path, Path, Path, dict[str, object]]:
    """→ (checkpoint, vocab file, vocoder dir, DiT arguments) for the spec's model."""
    cache = Path(spec.cache_dir)
    if spec.model == TINY or spec.model == RANDOM_PREFIX + BASE:
        built = tiny.build_tiny(cache) if spec.model == TINY else tiny.build_random_base(cache)
        return built.ckpt_path, built.vocab_file, built.vocoder_dir, built.model_cfg
    ckpt = hub_file(*HUB_CKPT, spec.allow_download) if spec.model == BASE else Path(spec.model)
    if not ckpt.is_file():
        raise BootError(f"checkpoint {ckpt} does not exist")
    vocoder = Path(spec.vocoder_dir) if spec.vocoder_dir else hub_file(HUB_VOCOS, "config.yaml",
                                                                      spec.allow_download).parent
    if not spec.vocoder_dir:
        hub_file(HUB_VOCOS, "pytorch_model.bin", spec.allow_download)
    vocab = Path(spec.vocab_file) if spec.vocab_file else tiny.shipped_vocab()
    return ckpt, vocab, vocoder, tiny.base_arch()
