"""The DiT's convolutional position embedding as im2col matrix products (engine.position_conv = "gemm").

f5-tts's ConvPositionEmbedding runs two grouped Conv1d (1024 channels, kernel 31, 16 groups) with
Mish. On an H100 cuDNN runs each as 16 small kernels plus NCHW<->NHWC transposes: 38 % of a
compiled Euler step (docs/benchmarks.md). The same arithmetic as one batched GEMM per conv over
unfolded windows, in the [batch, frames, channels] layout the transformer already uses, needs no
transposes and is one well-shaped matmul per group. Weights are the original module's (no copy of
the checkpoint is changed); the output equals the original up to floating-point summation order.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# Measured (docs/benchmarks.md): on an H100 the GEMM form takes the conv from 1.09 to 0.58 ms at batch 2
# and the Euler step's GPU time from 7.6 to 5.3 ms, but at batch 64 the unfolded copy makes it 6x slower
# (4.4 -> 27 ms); on CPU it is 2x slower. "auto" runs the GEMM form up to GEMM_MAX_ROWS rows (both CFG
# passes counted) and f5-tts's conv1d above; f5-tts's conv1d stays the default.
IMPLS = ("conv1d", "gemm", "auto")
GEMM_MAX_ROWS = 4


class GemmGroupedConv1d(nn.Module):
    """A grouped, 'same'-padded nn.Conv1d applied to [B, N, C] input as unfold + batched matmul."""

    def __init__(self, conv: nn.Conv1d) -> None:
        super().__init__()
        out_channels, in_per_group, kernel = conv.weight.shape
        self.groups, self.kernel, self.padding = conv.groups, kernel, conv.padding[0]
        out_per_group = out_channels // self.groups
        weight = conv.weight.detach().view(self.groups, out_per_group, in_per_group * kernel)
        self.weight = nn.Parameter(weight.transpose(1, 2).contiguous(), requires_grad=False)  # [G, Cg*K, O]
        bias = conv.bias.detach() if conv.bias is not None else torch.zeros(out_channels, dtype=weight.dtype)
        self.bias = nn.Parameter(bias.clone(), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, frames, channels = x.shape
        grouped = F.pad(x, (0, 0, self.padding, self.padding)).view(batch, -1, self.groups, channels // self.groups)
        windows = grouped.transpose(1, 2).unfold(2, self.kernel, 1)  # [B, G, N, Cg, K]
        columns = windows.reshape(batch, self.groups, frames, -1)  # [B, G, N, Cg*K]
        out = torch.matmul(columns, self.weight)  # [B, G, N, O]
        return out.transpose(1, 2).reshape(batch, frames, -1) + self.bias


class GemmConvPositionEmbedding(nn.Module):
    """Drop-in for f5_tts.model.modules.ConvPositionEmbedding (same forward signature and result)."""

    def __init__(self, original: nn.Module) -> None:
        super().__init__()
        convs = [layer for layer in original.conv1d if isinstance(layer, nn.Conv1d)]
        self.convs = nn.ModuleList(GemmGroupedConv1d(conv) for conv in convs)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        keep = mask.unsqueeze(-1) if mask is not None else None
        for conv in self.convs:
            x = x if keep is None else x.masked_fill(~keep, 0.0)
            x = F.mish(conv(x))
        return x if keep is None else x.masked_fill(~keep, 0.0)


class AutoConvPositionEmbedding(nn.Module):
    """The GEMM form for small batches (rows <= max_rows), f5-tts's own module above."""

    def __init__(self, original: nn.Module, max_rows: int = GEMM_MAX_ROWS) -> None:
        super().__init__()
        self.original, self.gemm, self.max_rows = original, GemmConvPositionEmbedding(original), max_rows

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.gemm(x, mask) if x.shape[0] <= self.max_rows else self.original(x, mask)


REPLACEMENTS: dict[str, type[nn.Module]] = {"gemm": GemmConvPositionEmbedding, "auto": AutoConvPositionEmbedding}


def use_position_conv(model: nn.Module, impl: str) -> int:
    """Swap every ConvPositionEmbedding under `model` for `impl` ("conv1d": none); returns how many."""
    from f5_tts.model.modules import ConvPositionEmbedding

    if impl not in IMPLS:
        raise ValueError(f"position_conv must be one of {IMPLS}, got {impl!r}")
    if impl == "conv1d":
        return 0
    swapped = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, ConvPositionEmbedding):
                setattr(parent, name, REPLACEMENTS[impl](child))
                swapped += 1
    return swapped
