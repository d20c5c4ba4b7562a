"""Ahead-of-time compiled DiT blocks and input embedding (compile_scope = "aot").

torch.compile re-traces Python with dynamo on every boot, even when every Inductor artefact is
cached; that re-trace plus recompiles for each new worker is most of a compiled worker's warm
restart. Here the DiT block and the input embedding are exported once (torch.export, dynamic rows
and frames) and compiled by AOTInductor into `.pt2` packages under the compile cache; a later boot
only loads them (no tracing). The block package takes its weights as inputs, so one package
serves all 22 blocks. The engine's own CUDA graphs (engine/captured.py) are then captured over
the loaded kernels, as in scope "captured".

A package is keyed by everything its code depends on (torch, f5-tts, this module, the block's
shapes, dtype, device capability, bucket limits); engine/aot_store.py builds, checks and loads
it (a package that cannot be built or loaded here means scope "captured"). Calls outside the
exported ranges (or without a mask) run the original module. A package assumes the strides it was
exported with (unlike dynamo, it has no guards), so every input is made contiguous first (a no-op
for contiguous tensors; the input embedding's output is not).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ishowttsd.engine import aot_store
from ishowttsd.engine.aot_store import AotUnusable, load_or_build

__all__ = ["AotUnusable", "install_aot", "package_key", "uninstall"]

AOT_VERSION = "3"  # bump when the exported functions change
ROWS_MIN = 2  # CFG packs the conditional and unconditional pass: at least two rows


Arguments = tuple[tuple[Any, ...], dict[str, Any]]


class Functional(nn.Module):
    """The module called with its parameters passed in as `weights`, its inputs mapped by `arguments`.

    Nothing of the checkpoint is baked into a package (the template is not a submodule): the block
    package serves all 22 blocks, and a new checkpoint of the same architecture needs no rebuild.
    """

    def __init__(self, template: nn.Module, arguments: Callable[..., Arguments]) -> None:
        super().__init__()
        self._template = (template,)  # a tuple hides it from nn.Module registration
        self.names = [name for name, _ in template.named_parameters()]
        self.arguments = arguments
        # One constant in the package: loading a CUDA package with none crashed (torch 2.11, H100).
        first = next(template.parameters())
        self.register_buffer("anchor", torch.zeros((), dtype=first.dtype, device=first.device))

    def forward(self, inputs: tuple[torch.Tensor, ...], weights: tuple[torch.Tensor, ...]) -> torch.Tensor:
        args, kwargs = self.arguments(*inputs)
        params = dict(zip(self.names, weights, strict=True))
        return torch.func.functional_call(self._template[0], params, args, kwargs) + self.anchor


def block_arguments(x: torch.Tensor, t: torch.Tensor, mask: torch.Tensor, freqs: torch.Tensor) -> Arguments:
    return (x, t), {"mask": mask, "rope": (freqs, None)}


def input_embed_arguments(x: torch.Tensor, cond: torch.Tensor, text: torch.Tensor, mask: torch.Tensor) -> Arguments:
    return (x, cond, text), {"drop_audio_cond": False, "audio_mask": mask}


def package_key(dit: nn.Module, dtype: torch.dtype, device: torch.device, rows_max: int,
                frames: tuple[int, int]) -> str:
    """A name that changes whenever the compiled code could: versions, shapes, dtype, GPU, ranges."""
    from importlib.metadata import version

    capability = torch.cuda.get_device_capability(device) if device.type == "cuda" else ("cpu",)
    block = dit.transformer_blocks[0]
    parts = (AOT_VERSION, torch.__version__, version("f5-tts"), str(dtype), str(capability), rows_max, frames,
             [tuple(p.shape) for p in block.parameters()], [tuple(p.shape) for p in dit.input_embed.parameters()],
             type(block.attn.processor).__name__, type(dit.input_embed.conv_pos_embed).__name__)
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:16]


class AotRanges:
    """The shapes the packages were exported for: rows (both CFG passes) and frames (None = one size only)."""

    def __init__(self, rows_max: int, frames: tuple[int, int]) -> None:
        self.rows = torch.export.Dim("rows", min=ROWS_MIN, max=rows_max) if rows_max > ROWS_MIN else None
        self.frames = torch.export.Dim("frames", min=frames[0], max=frames[1]) if frames[1] > frames[0] else None
        self.rows_max, self.frames_range = rows_max, frames

    def covers(self, x: torch.Tensor) -> bool:
        return ROWS_MIN <= x.shape[0] <= self.rows_max and self.frames_range[0] <= x.shape[1] <= self.frames_range[1]

    def example(self) -> tuple[int, int]:
        """(rows, frames) to export with: inside the ranges (the frames' midpoint)."""
        low, high = self.frames_range
        return min(4, self.rows_max), (low + high) // 2


def block_example(dit: nn.Module, device: torch.device, dtype: torch.dtype, freqs: Callable[[int], torch.Tensor],
                  rows: int, frames: int) -> tuple[torch.Tensor, ...]:
    dim = dit.transformer_blocks[0].attn.to_q.in_features
    x = torch.randn(rows, frames, dim, device=device, dtype=dtype)
    t = torch.randn(rows, dim, device=device, dtype=dtype)
    mask = torch.ones(rows, frames, dtype=torch.bool, device=device)
    mask[:, frames - frames // 8:] = False
    return x, t, mask, freqs(frames)


def install_block(block: nn.Module, runner: Callable[..., Any], ranges: AotRanges) -> None:
    """The block's forward calls the package with its own weights (the original outside the ranges)."""
    weights, original = tuple(block.parameters()), block.forward

    def forward(x: torch.Tensor, t: torch.Tensor, mask: torch.Tensor | None = None, rope: Any = None) -> torch.Tensor:
        if mask is None or rope is None or not ranges.covers(x):
            return original(x, t, mask=mask, rope=rope)
        return runner((x.contiguous(), t.contiguous(), mask.contiguous(), rope[0].contiguous()), weights)

    block.forward = forward


def install_input_embed(embed: nn.Module, runner: Callable[..., Any], ranges: AotRanges) -> None:
    weights, original = tuple(embed.parameters()), embed.forward

    def forward(x: torch.Tensor, cond: torch.Tensor, text_embed: torch.Tensor, drop_audio_cond: bool = False,
                audio_mask: torch.Tensor | None = None) -> torch.Tensor:
        if drop_audio_cond or audio_mask is None or not ranges.covers(x):
            return original(x, cond, text_embed, drop_audio_cond=drop_audio_cond, audio_mask=audio_mask)
        return runner((x.contiguous(), cond.contiguous(), text_embed.contiguous(), audio_mask.contiguous()), weights)

    embed.forward = forward


def uninstall(modules: Sequence[nn.Module]) -> None:
    for module in modules:
        module.__dict__.pop("forward", None)


def install_aot(dit: nn.Module, freqs: Callable[[int], torch.Tensor], device: torch.device, dtype: torch.dtype,
                cache_dir: str, rows_max: int, frames: tuple[int, int]) -> None:
    """Load (or build, then load) the block and input-embedding packages and route the modules to them."""
    ranges = AotRanges(rows_max, frames)
    key = package_key(dit, dtype, device, rows_max, frames)
    blocks = list(dit.transformer_blocks)
    block_path, embed_path = Path(cache_dir) / f"block-{key}.pt2", Path(cache_dir) / f"input-embed-{key}.pt2"

    def example() -> tuple[torch.Tensor, ...]:  # made only when a package is built, not at every boot
        return block_example(dit, device, dtype, freqs, *ranges.example())

    block_runner = load_or_build(block_path, lambda: aot_store.export_and_package(
        Functional(blocks[0], block_arguments), (example(), tuple(blocks[0].parameters())),
        (block_dims(ranges), static(blocks[0])), block_path))
    embed_runner = load_or_build(embed_path, lambda: aot_store.export_and_package(
        Functional(dit.input_embed, input_embed_arguments), (embed_example(dit, example()),
        tuple(dit.input_embed.parameters())), (embed_dims(ranges), static(dit.input_embed)), embed_path))
    for block in blocks:
        install_block(block, block_runner, ranges)
    install_input_embed(dit.input_embed, embed_runner, ranges)


def embed_example(dit: nn.Module, block_example: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    x, _, mask, _ = block_example
    mels, text_dim = dit.proj_out.out_features, dit.text_embed.text_embed.embedding_dim
    rows, frames = mask.shape
    noisy = torch.randn(rows, frames, mels, device=x.device, dtype=x.dtype)
    return noisy, torch.randn_like(noisy), torch.randn(rows, frames, text_dim, device=x.device, dtype=x.dtype), mask


def static(module: nn.Module) -> tuple[None, ...]:
    """Dynamic-shape spec of a module's weights: every one static."""
    return tuple(None for _ in module.parameters())


def block_dims(ranges: AotRanges) -> tuple[dict[int, Any], ...]:
    both = {0: ranges.rows, 1: ranges.frames}
    return both, {0: ranges.rows}, both, {1: ranges.frames}


def embed_dims(ranges: AotRanges) -> tuple[dict[int, Any], ...]:
    both = {0: ranges.rows, 1: ranges.frames}
    return both, both, both, both
