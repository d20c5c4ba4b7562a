#!/usr/bin/env python3
"""Time the DiT's ConvPositionEmbedding conv (1024 ch, kernel 31, groups 16) in fp16 under cuDNN settings."""

import torch
import torch.nn.functional as F
from gpu_posconv_probe import bench  # same folder: run as python3 scripts/gpu_conv_probe.py

for batch in (2, 64):
    x = torch.randn(batch, 1024, 1344, device="cuda", dtype=torch.float16)
    w = torch.randn(1024, 64, 31, device="cuda", dtype=torch.float16) * 0.02
    for bench_mode in (False, True):
        torch.backends.cudnn.benchmark = bench_mode
        ms = bench(lambda x=x, w=w: F.conv1d(x, w, padding=15, groups=16))
        print(f"batch {batch} cudnn.benchmark={bench_mode}: {ms:.3f} ms")
    torch.backends.cudnn.benchmark = False
    xl = x.transpose(1, 2).contiguous().transpose(1, 2)  # channels-last storage
    ms = bench(lambda xl=xl, w=w: F.conv1d(xl, w, padding=15, groups=16))
    print(f"batch {batch} channels-last input: {ms:.3f} ms")
    xb, wb = x.bfloat16(), w.bfloat16()
    print(f"batch {batch} bf16: {bench(lambda xb=xb, wb=wb: F.conv1d(xb, wb, padding=15, groups=16)):.3f} ms")
