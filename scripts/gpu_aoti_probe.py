#!/usr/bin/env python3
"""Can one DiT block be compiled ahead of time (AOTInductor) with its weights as inputs, so one package
serves all 22 blocks and every (rows, width) bucket, and how long do compile, load and a call take?

    python3 scripts/gpu_aoti_probe.py --cache /tmp/models --out $OUT/aoti.json

Feasibility probe for a warm restart without dynamo: prints compile / load seconds, the package's
max relative error against the eager block, and the call time against the torch.compile'd block.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch


def log(*args: object) -> None:
    print(f"[{time.strftime('%H:%M:%S')}]", *args, flush=True)


class FunctionalBlock(torch.nn.Module):
    """block(x, t, mask, freqs) with the block's weights passed in, so one graph serves every block."""

    def __init__(self, template: torch.nn.Module) -> None:
        super().__init__()
        self.template = template
        self.names = [name for name, _ in template.named_parameters()]

    def forward(self, x: torch.Tensor, t: torch.Tensor, mask: torch.Tensor, freqs: torch.Tensor,
                *weights: torch.Tensor) -> torch.Tensor:
        params = dict(zip(self.names, weights, strict=True))
        return torch.func.functional_call(self.template, params, (x, t), {"mask": mask, "rope": (freqs, None)})


def timed(fn: Any, repeats: int = 50) -> float:
    for _ in range(5):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cache", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    result: dict[str, Any] = {}
    from ishowttsd.engine.f5 import F5Engine
    from ishowttsd.engine.spec import EngineSpec
    from ishowttsd.engine.tiny import build_random_base

    build_random_base(Path(args.cache))
    engine = F5Engine.load(EngineSpec(model="random:F5TTS_v1_Base", cache_dir=args.cache, device="cuda",
                                      dtype="fp16"))
    dit = engine.model.transformer
    blocks = list(dit.transformer_blocks)
    wrapper = FunctionalBlock(blocks[0]).eval()

    def inputs(rows: int, width: int) -> tuple[torch.Tensor, ...]:
        x = torch.randn(rows, width, 1024, device="cuda", dtype=torch.float16)
        t = torch.randn(rows, 1024, device="cuda", dtype=torch.float16)
        mask = torch.ones(rows, width, dtype=torch.bool, device="cuda")
        mask[:, width - 40:] = False
        return x, t, mask, engine.rotary(width)

    weights = [tuple(p.detach() for p in block.parameters()) for block in blocks]
    rows_dim, width_dim = torch.export.Dim("rows", min=2, max=64), torch.export.Dim("width", min=128, max=4096)
    example = inputs(4, 896)
    dynamic = ({0: rows_dim, 1: width_dim}, {0: rows_dim}, {0: rows_dim, 1: width_dim}, {1: width_dim},
               tuple([None] * len(weights[0])))
    with torch.no_grad():
        started = time.perf_counter()
        try:
            exported = torch.export.export(wrapper, (*example, *weights[0]), dynamic_shapes=dynamic, strict=False)
            result["export_s"] = time.perf_counter() - started
            log("exported", result["export_s"])
            started = time.perf_counter()
            path = torch._inductor.aoti_compile_and_package(exported, package_path=f"{args.cache}/block.pt2")
            result["aoti_compile_s"] = time.perf_counter() - started
            log("aoti compiled", result["aoti_compile_s"])
        except Exception as exc:
            result["error"] = f"{type(exc).__name__}: {exc}"[:3000]
            log(result["error"])
            Path(args.out).write_text(json.dumps(result, indent=2))
            return 0
    with torch.inference_mode():
        started = time.perf_counter()
        runner = torch._inductor.aoti_load_package(path)
        result["aoti_load_s"] = time.perf_counter() - started
        log("aoti loaded", result["aoti_load_s"])
        compiled = torch.compile(blocks[0], dynamic=True)
        for rows, width in ((2, 1344), (64, 1344), (2, 256)):
            x, t, mask, freqs = inputs(rows, width)
            eager = blocks[3](x, t, mask=mask, rope=(freqs, None))
            aot = runner(x, t, mask, freqs, *weights[3])
            error = float((aot.float() - eager.float()).norm() / eager.float().norm())
            row = {"rows": rows, "width": width, "rel_l2_vs_eager": error,
                   "aoti_ms": timed(lambda: runner(x, t, mask, freqs, *weights[3])),  # noqa: B023
                   "compiled_ms": timed(lambda: compiled(x, t, mask=mask, rope=(freqs, None))),  # noqa: B023
                   "eager_ms": timed(lambda: blocks[3](x, t, mask=mask, rope=(freqs, None)))}  # noqa: B023
            result.setdefault("calls", []).append(row)
            log(row)
        graph = torch.cuda.CUDAGraph()
        x, t, mask, freqs = inputs(2, 1344)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            runner(x, t, mask, freqs, *weights[3])
        torch.cuda.current_stream().wait_stream(side)
        try:
            with torch.cuda.graph(graph):
                out = runner(x, t, mask, freqs, *weights[3])
            graph.replay()
            torch.cuda.synchronize()
            result["cuda_graph_capture"] = "ok"
            result["graph_rel_l2"] = float((out.float() - blocks[3](x, t, mask=mask, rope=(freqs, None)).float()).norm()
                                           / out.float().norm())
        except Exception as exc:
            result["cuda_graph_capture"] = f"{type(exc).__name__}: {exc}"[:1000]
        log("graph", result["cuda_graph_capture"])
    Path(args.out).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
