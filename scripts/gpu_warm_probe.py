#!/usr/bin/env python3
"""Where a compiled worker's boot goes, bucket by bucket, and what each kernel class costs at batch 1.

One process = one worker boot, as the daemon's worker does it (same compile-cache environment,
same spec, same warm-up), timed phase by phase and bucket by bucket. Run it twice on one cache
directory: the first run is a cold start, the second a warm restart.

    python3 scripts/gpu_warm_probe.py --cache /tmp/models --out $OUT/cold.json
    python3 scripts/gpu_warm_probe.py --cache /tmp/models --out $OUT/warm.json --ablate

--ablate (after the warm-up) times batch-1 and batch-32 sampling in the 1344 bucket with parts of
the step removed or simplified: TIMING ONLY, those variants do not compute the model's function
(upper bounds of what a faster kernel for that part could save).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

T0 = time.perf_counter()
RESULT: dict[str, Any] = {"phases": {}, "buckets": []}
SYNC: Any = None
REF_FRAMES, GEN_FRAMES = 469, 787
TEXT = "The quick brown fox jumps over the lazy dog, and the chat keeps asking for one more."
TRANSCRIPT = "Some call me nature, others call me mother nature."


def log(*args: object) -> None:
    print(f"[{time.perf_counter() - T0:7.2f}s]", *args, flush=True)


def phase(name: str, started: float) -> float:
    now = time.perf_counter()
    RESULT["phases"][name] = round(now - started, 3)
    log(f"phase {name}: {now - started:.2f} s")
    return now


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cache", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--ablate", action="store_true")
    parser.add_argument("--engine", default="{}", help="more EngineSpec fields (JSON)")
    parser.add_argument("--model", default="random:F5TTS_v1_Base", help="tiny + --device cpu: a smoke test")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--no-autotune", action="store_true", help="capture without cuDNN autotuning")
    return parser.parse_args()


def main() -> int:
    args = parse()
    from ishowttsd.engine.worker import cache_environment

    for key, value in cache_environment(args.cache).items():
        os.environ.setdefault(key, value)
    started = time.perf_counter()
    import torch

    global SYNC
    SYNC = torch.cuda.synchronize if args.device == "cuda" else (lambda: None)
    from ishowttsd.engine import compiled as compiled_mod
    from ishowttsd.engine.compiled import compile_engine, compiled_graphs, warm_references
    from ishowttsd.engine.f5 import F5Engine
    from ishowttsd.engine.protocol import VoiceRef
    from ishowttsd.engine.spec import EngineSpec
    from ishowttsd.engine.tiny import build_random_base
    from ishowttsd.voices import find_default_reference

    started = phase("import", started)
    if args.no_autotune:
        import contextlib

        from ishowttsd.engine import captured

        captured.cudnn_autotuned = contextlib.nullcontext
    if args.model.startswith("random:"):
        build_random_base(Path(args.cache))
    started = phase("build_random_base", started)
    spec = EngineSpec(model=args.model, cache_dir=args.cache, device=args.device, dtype="fp16", compile=True,
                      **{"max_batch": 32, "max_frames": 2048, **json.loads(args.engine)})
    engine = F5Engine.load(spec)
    SYNC()
    started = phase("load", started)
    compile_engine(engine, spec)
    RESULT["compile_note"], RESULT["compile_error"] = engine.compile_note, engine.compile_error
    log("compile note/error:", engine.compile_note, engine.compile_error)
    started = phase("compile_setup", started)
    voice = VoiceRef("default", str(find_default_reference()), TRANSCRIPT)
    ref = engine.reference(voice)
    for cropped, width in warm_references(ref, engine.shapes.widths):
        for rows in engine.shapes.rows:
            graphs = compiled_graphs()
            t0 = time.perf_counter()
            engine.captured.add(rows, width)
            SYNC()
            t1 = time.perf_counter()
            generators = [torch.Generator(device=engine.device).manual_seed(i) for i in range(rows)]
            engine.sample([cropped] * rows, ["Warm up."] * rows, [width] * rows, compiled_mod.CAPTURED_CHECK_NFE,
                          generators)
            t2 = time.perf_counter()
            row = {"rows": rows, "width": width, "capture_s": round(t1 - t0, 3), "check_s": round(t2 - t1, 3),
                   "new_graphs": compiled_graphs() - graphs}
            RESULT["buckets"].append(row)
            log(row)
    started = phase("buckets", started)
    for frames in (*compiled_mod.VOCODER_WARM_FRAMES, max(engine.shapes.widths)):
        engine.vocode(torch.randn(frames, engine.model.num_channels, device=engine.device))
    started = phase("vocoder_warm", started)
    RESULT["vocoder_787_ms"] = vocoder_times(engine)
    RESULT["graphs_at_ready"] = compiled_graphs()
    RESULT["boot_total_s"] = round(time.perf_counter() - T0, 3)
    log("boot total", RESULT["boot_total_s"])
    save(args)
    if args.ablate:
        ablate(engine, ref, args)
    save(args)
    return 0


def save(args: argparse.Namespace) -> None:
    Path(args.out).write_text(json.dumps(RESULT, indent=2))


def time_sampling(engine: Any, ref: Any, rows: int, repeats: int = 15) -> float:
    import torch

    generators = [torch.Generator(device=engine.device) for _ in range(rows)]
    times = []
    for i in range(repeats + 2):
        for k, g in enumerate(generators):
            g.manual_seed(k)
        SYNC()
        t0 = time.perf_counter()
        engine.sample([ref] * rows, [TEXT] * rows, [REF_FRAMES + GEN_FRAMES] * rows, 8, generators)
        SYNC()
        if i >= 2:
            times.append(time.perf_counter() - t0)
    return round(1000 * statistics.median(times), 2)


def vocoder_times(engine: Any) -> dict[str, float]:
    """The vocoder at 787 frames as the engine runs it, and eager (backbone and head uncompiled)."""
    import torch

    mel = torch.randn(GEN_FRAMES, engine.model.num_channels, device=engine.device)
    found, kept = {}, (engine.backbone, engine.head)
    for label, backbone, head in (("engine", *kept),
                                  ("eager", engine.vocoder.backbone, engine.vocoder.head)):
        engine.backbone, engine.head = backbone, head
        times = []
        for _ in range(25):
            SYNC()
            t0 = time.perf_counter()
            engine.vocode(mel)
            times.append(time.perf_counter() - t0)
        found[label] = round(1000 * statistics.median(times[5:]), 3)
    engine.backbone, engine.head = kept
    log("vocoder", found)
    return found


def ablate(engine: Any, ref: Any, args: argparse.Namespace) -> None:

    from ishowttsd.engine.flow import MaskedAttnProcessor

    ref = type(ref)(mel=ref.mel[:REF_FRAMES], rms=ref.rms, text=ref.text)
    rows_list = (1, 32) if args.device == "cuda" else (1, 2)
    table: dict[str, dict[int, float]] = {}

    def measure(label: str) -> None:
        table[label] = {}
        for rows in rows_list:
            engine.captured.add(rows, 1344)
            try:
                table[label][rows] = time_sampling(engine, ref, rows)
            except Exception as exc:  # a probe variant that does not compile is reported, not fatal
                RESULT.setdefault("errors", {})[label] = f"{type(exc).__name__}: {exc}"[:500]
                break
        log("ablation", label, table[label])
        RESULT["ablation_ms"] = table
        save(args)

    measure("baseline")
    if engine.spec.compile_scope == "aot":  # the variants below patch modules the packages replace
        return

    class NoMask(MaskedAttnProcessor):
        def __call__(self, attn: Any, x: Any, mask: Any = None, rope: Any = None) -> Any:
            return super().__call__(attn, x, None, rope)

    embed = engine.model.transformer.input_embed
    conv_forward = embed.conv_pos_embed.forward
    embed.conv_pos_embed.forward = lambda x, mask=None: x * 0.0
    measure("no position conv (not the model)")
    embed.conv_pos_embed.forward = conv_forward
    processors = [block.attn.processor for block in engine.model.transformer.transformer_blocks]
    for block in engine.model.transformer.transformer_blocks:
        block.attn.processor = NoMask(block.attn.processor.pe_attn_head)
    measure("attention without key mask (not the model)")
    for block in engine.model.transformer.transformer_blocks:
        block.attn.processor.__class__ = type("Flash", (NoMask,), {"__call__": flash_call})
    measure("attention without mask, flash backend forced (not the model)")
    for block, processor in zip(engine.model.transformer.transformer_blocks, processors, strict=True):
        block.attn.processor = processor


def flash_call(self: Any, attn: Any, x: Any, mask: Any = None, rope: Any = None) -> Any:
    from torch.nn.attention import SDPBackend, sdpa_kernel

    with sdpa_kernel([SDPBackend.FLASH_ATTENTION]):
        return super(type(self), self).__call__(attn, x, None, rope)


if __name__ == "__main__":
    sys.exit(main())
