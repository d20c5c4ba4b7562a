#!/usr/bin/env python3
"""Side by side on one GPU: f5-tts's ConvPositionEmbedding (grouped conv1d via cuDNN) vs the GEMM form
(ishowttsd/engine/posconv.py), eager and torch.compile'd, fp16, 1344 frames, batch 2 (batch 1 with
CFG) and 64 (batch 32 with CFG). Prints milliseconds per call and the max relative difference."""

from __future__ import annotations

import json
import sys

import torch
from f5_tts.model.modules import ConvPositionEmbedding

from ishowttsd.engine.posconv import GemmConvPositionEmbedding


def bench(fn, n: int = 50) -> float:
    for _ in range(5):
        fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(n):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / n


def main() -> int:
    torch.manual_seed(0)
    original = ConvPositionEmbedding(1024).cuda().half().eval()
    gemm = GemmConvPositionEmbedding(original).cuda().half().eval()
    rows = []
    for batch in (2, 64):
        x = torch.randn(batch, 1344, 1024, device="cuda", dtype=torch.float16)
        mask = torch.ones(batch, 1344, dtype=torch.bool, device="cuda")
        mask[0, 1000:] = False
        with torch.inference_mode():
            a, b = original(x, mask).float(), gemm(x, mask).float()
            diff = float((a - b).norm() / a.norm())
            for name, module in (("conv1d", original), ("gemm", gemm)):
                compiled = torch.compile(module)
                row = {"batch": batch, "impl": name, "rel_l2_gemm_vs_conv1d": diff,
                       "eager_ms": bench(lambda m=module, x=x, k=mask: m(x, k)),
                       "compiled_ms": bench(lambda m=compiled, x=x, k=mask: m(x, k))}
                rows.append(row)
                print(json.dumps(row), flush=True)
    if len(sys.argv) > 1:
        with open(sys.argv[1], "w") as out:
            json.dump({"card": torch.cuda.get_device_name(0), "torch": torch.__version__, "rows": rows}, out, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
