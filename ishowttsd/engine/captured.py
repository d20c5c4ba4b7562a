"""CUDA graphs the engine captures itself (compile_scope = "captured").

Each DiT block (one graph shared by the 22 blocks, as in scope "blocks") and the input embedding
are compiled by Inductor without CUDA graphs;
then, per warmed (rows, width) bucket, two CUDA graphs are captured over static buffers:

- prep: the text embedding of the conditional and the unconditional pass and the padding mask,
  with the text padded to the bucket's width (no `.item()` host sync, unlike f5-tts's own path);
- step: one Euler step that updates the bucket's `x` in place, reading t and dt from a 2-element
  buffer, so the same graph serves every NFE.

A request copies its tokens, lengths, reference mels and noise into the bucket's buffers, replays
prep once and step NFE times: no dynamo guards, no CUDA-graph-tree bookkeeping and no eager glue
between steps. cuDNN picks its fastest algorithm per bucket while capturing (a replay never
re-tunes). All graphs share one memory pool (they never run at the same time). On a CPU device
the same buffers and functions run directly, without graphs (CPU tests cover the plumbing).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch

from ishowttsd.engine.flow import text_embedding_fixed, tokens_to_width

Replay = Callable[[], None]
Capture = Callable[[Callable[[], None]], Replay]
WARM_RUNS = 1  # before capture, on a side stream: compiles, cuBLAS workspaces, cuDNN autotuning


def cuda_graph_capture(device: torch.device) -> Capture:
    """Capture a function as a CUDA graph in a pool shared by every graph of this engine."""
    pool = torch.cuda.graph_pool_handle()

    def capture(run: Callable[[], None]) -> Replay:
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            for _ in range(WARM_RUNS):
                run()
        torch.cuda.current_stream(device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=pool):
            run()
        return graph.replay

    return capture


def direct_capture(run: Callable[[], None]) -> Replay:
    """No graph (CPU): the function itself is the replay."""
    run()
    return run


def capture_for(device: torch.device) -> Capture:
    return cuda_graph_capture(device) if device.type == "cuda" else direct_capture


@contextmanager
def cudnn_autotuned() -> Iterator[None]:
    """cuDNN times its algorithms for each new shape while on: while capturing only (replays never re-tune)."""
    before = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = True
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = before


@dataclass
class BucketGraphs:
    """Static inputs/outputs of one (rows, width) bucket and its two replays."""

    tokens: torch.Tensor  # (rows, width) int64 text ids, -1 = padding
    lens: torch.Tensor  # (rows,) int64 reference + generated frames
    cond: torch.Tensor  # (rows, width, mels) reference mels, zero past each reference
    x: torch.Tensor  # (rows, width, mels) float32: noise in, the sample out
    tdt: torch.Tensor  # (2,) float32: t and dt of the step to run
    mask: torch.Tensor  # (rows, width) bool: frames inside each row
    text_cond: torch.Tensor
    text_uncond: torch.Tensor
    prep: Replay = field(default=lambda: None)
    step: Replay = field(default=lambda: None)


class CapturedGraphs:
    """The engine's captured buckets: built by `add` before Ready, run by `run` while serving."""

    def __init__(self, dit: torch.nn.Module, step: Callable[..., torch.Tensor], freqs: Callable[[int], torch.Tensor],
                 device: torch.device, dtype: torch.dtype, capture: Capture) -> None:
        self.dit, self.step, self.freqs = dit, step, freqs
        self.device, self.dtype, self.capture = device, dtype, capture
        self.buckets: dict[tuple[int, int], BucketGraphs] = {}

    def add(self, rows: int, width: int) -> None:
        """Allocate the bucket's buffers and capture its prep and step graphs."""
        with torch.inference_mode(), cudnn_autotuned():
            buffers, freqs = self._buffers(rows, width), self.freqs(width)  # freqs made outside any graph
            buffers.prep = self.capture(lambda: self._prep(buffers))
            buffers.step = self.capture(lambda: self._step(buffers, freqs))
        self.buckets[(rows, width)] = buffers

    def _buffers(self, rows: int, width: int) -> BucketGraphs:
        channels, dim = self.dit.proj_out.out_features, self.dit.text_embed.text_embed.embedding_dim
        kw = {"device": self.device}
        return BucketGraphs(
            tokens=torch.full((rows, width), -1, dtype=torch.long, **kw),
            lens=torch.full((rows,), width, dtype=torch.long, **kw),
            cond=torch.zeros(rows, width, channels, dtype=self.dtype, **kw),
            x=torch.zeros(rows, width, channels, dtype=torch.float32, **kw),
            tdt=torch.zeros(2, dtype=torch.float32, **kw),
            mask=torch.ones(rows, width, dtype=torch.bool, **kw),
            text_cond=torch.zeros(rows, width, dim, dtype=self.dtype, **kw),
            text_uncond=torch.zeros(rows, width, dim, dtype=self.dtype, **kw))

    def _prep(self, b: BucketGraphs) -> None:
        width = b.tokens.shape[1]
        b.mask.copy_(torch.arange(width, device=self.device)[None, :] < b.lens[:, None])
        b.text_cond.copy_(text_embedding_fixed(self.dit.text_embed, b.tokens, b.mask, drop_text=False))
        b.text_uncond.copy_(text_embedding_fixed(self.dit.text_embed, b.tokens, b.mask, drop_text=True))

    def _step(self, b: BucketGraphs, freqs: torch.Tensor) -> None:
        b.x.copy_(self.step(b.x, b.cond, b.text_cond, b.text_uncond, freqs, b.tdt[0], b.tdt[1], b.mask))

    def has(self, rows: int, width: int) -> bool:
        return (rows, width) in self.buckets

    def run(self, tokens: torch.Tensor, lens: torch.Tensor, cond: torch.Tensor, noise: torch.Tensor,
            grid: torch.Tensor, progress: Callable[[], None]) -> torch.Tensor:
        """Sample one padded batch: inputs into the bucket's buffers, prep once, step per grid interval."""
        b = self.buckets[(noise.shape[0], noise.shape[1])]
        b.tokens.copy_(tokens_to_width(tokens, noise.shape[1]))
        b.lens.copy_(lens)
        b.cond.copy_(cond)
        b.x.copy_(noise)
        b.prep()
        for t_dt in torch.stack((grid[:-1], grid[1:] - grid[:-1]), dim=1):
            b.tdt.copy_(t_dt)
            b.step()
            progress()
        return b.x.clone()

