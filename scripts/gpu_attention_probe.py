#!/usr/bin/env python3
"""Attention kernels for the DiT's shapes on a GPU: which SDPA path is fastest with a key-padding mask.

16 heads of 64, fp16, frames 1344 with the last 88 padded (the 1256-frame workload in its bucket);
rows 2 (batch 1 with CFG) and 64 (batch 32). Prints ms per call (CUDA events, median of 50) and the
max difference to the math kernel in fp32 over the valid queries.

    python3 scripts/gpu_attention_probe.py --out attention.json
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

HEADS, HEAD_DIM, FRAMES, VALID = 16, 64, 1344, 1256
Variant = Callable[[], torch.Tensor]


def time_ms(fn: Variant, repeats: int = 50) -> float:
    for _ in range(5):
        fn()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def sdpa_variants(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, keep: torch.Tensor) -> dict[str, Variant]:
    bias = torch.zeros(keep.shape, dtype=q.dtype, device=q.device).masked_fill(~keep, float("-inf"))
    out: dict[str, Variant] = {
        "default, bool mask (today)": lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=keep),
        "default, additive mask": lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=bias),
        "no mask (flash; not equivalent)": lambda: F.scaled_dot_product_attention(q, k, v),
    }
    for backend in (SDPBackend.CUDNN_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH):
        def run(backend: SDPBackend = backend) -> torch.Tensor:
            with sdpa_kernel(backend):
                return F.scaled_dot_product_attention(q, k, v, attn_mask=keep)
        out[f"{backend.name}, bool mask"] = run
    return out


def flex_variant(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, keep: torch.Tensor) -> dict[str, Variant]:
    try:
        from torch.nn.attention.flex_attention import create_block_mask, flex_attention

        valid = keep[:, 0, 0, :]
        block = create_block_mask(lambda b, h, qi, ki: valid[b, ki], keep.shape[0], None, FRAMES, FRAMES,
                                  device=str(q.device))
        flex = torch.compile(flex_attention)
        return {"flex_attention, block mask (compiled)": lambda: flex(q, k, v, block_mask=block)}
    except Exception as exc:  # report, keep probing
        print("flex_attention unavailable:", type(exc).__name__, exc)
        return {}


def probe(rows: int) -> list[dict[str, object]]:
    torch.manual_seed(0)
    q, k, v = (torch.randn(rows, HEADS, FRAMES, HEAD_DIM, device="cuda", dtype=torch.float16) for _ in range(3))
    keep = (torch.arange(FRAMES, device="cuda") < VALID)[None, None, None, :].expand(rows, 1, 1, FRAMES)
    with sdpa_kernel(SDPBackend.MATH):
        reference = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), attn_mask=keep)
    results: list[dict[str, object]] = []
    for name, fn in {**sdpa_variants(q, k, v, keep), **flex_variant(q, k, v, keep)}.items():
        try:
            ms = time_ms(fn)
            diff = float((fn().float() - reference)[:, :, :VALID].abs().max())
            results.append({"rows": rows, "variant": name, "ms": round(ms, 4), "max_abs_diff": diff})
        except Exception as exc:
            results.append({"rows": rows, "variant": name, "error": f"{type(exc).__name__}: {exc}"[:200]})
        print(results[-1], flush=True)
    return results


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    rows = [r for n in (2, 64) for r in probe(n)]
    Path(args.out).write_text(json.dumps({"card": torch.cuda.get_device_name(0), "torch": torch.__version__,
                                          "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
