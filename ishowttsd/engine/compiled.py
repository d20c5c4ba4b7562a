"""torch.compile for the engine: the flow step and the vocoder's backbone/head, warmed per bucket.

Scope "captured" (engine/captured.py) compiles each DiT block and captures its own CUDA graphs.
In scope "step", the step is compiled once with dynamic shapes (one Inductor graph for every (rows, width)), in
mode "reduce-overhead" by default, so each warmed bucket replays its own CUDA graph. The vocoder
never runs inside CUDA graphs (its outputs would be overwritten by the next replay) and is
compiled in Inductor's default mode with a dynamic length. Every shape a request can take is run
before Ready, so no compilation happens while serving; any failure falls back to eager (R24),
with the reason kept in `engine.compile_error` (Ready → /v1/status, metrics).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace

import torch

from ishowttsd.engine.batcher import batch_buckets
from ishowttsd.engine.captured import CapturedGraphs, capture_for
from ishowttsd.engine.f5 import F5Engine, Reference
from ishowttsd.engine.shapes import Shapes
from ishowttsd.engine.spec import EngineSpec, shape_buckets

WARM_NFE = 3  # CUDA graph trees: a warm-up run, a recording, a replay per shape
CAPTURED_CHECK_NFE = 1  # captured buckets are warm once captured: one replay checks the path
VOCODER_WARM_FRAMES = (64, 200)
GRAPH_MODES = ("reduce-overhead", "max-autotune")
BLOCK_MODE = "default"  # per-block graphs: CUDA graphs would be recorded per block and bucket


def compiled_graphs() -> int:
    """How many graphs dynamo has compiled in this process so far."""
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


def compile_engine(engine: F5Engine, spec: EngineSpec) -> None:
    """Wrap the step (or each DiT block) and the vocoder in torch.compile (lazy: errors surface when warming)."""
    try:
        options: dict[str, object] = {"backend": spec.compile_backend, "dynamic": True}
        vocoder_options = dict(options)
        if spec.compile_backend == "inductor":
            options["mode"] = spec.compile_mode if spec.compile_scope == "step" else BLOCK_MODE
        SCOPES[spec.compile_scope](engine, options)
        engine.backbone = torch.compile(engine.vocoder.backbone, **vocoder_options)
        engine.head = torch.compile(engine.vocoder.head, **vocoder_options)
    except Exception as exc:  # any compile failure means eager
        fall_back_to_eager(engine, f"torch.compile failed: {type(exc).__name__}: {exc}")
        return
    if spec.compile_scope == "step" and spec.compile_backend == "inductor" and spec.compile_mode in GRAPH_MODES:
        engine.before_step = torch.compiler.cudagraph_mark_step_begin
    engine.shapes = Shapes(shape_buckets(spec), batch_buckets(spec.max_batch))
    engine.compiled = True


def compile_step(engine: F5Engine, options: dict[str, object]) -> None:
    """The whole Euler step as one graph: one CUDA graph per bucket replays all 22 blocks (fastest; slow to compile)."""
    engine.step = torch.compile(engine.step_eager, **options)


def compile_blocks(engine: F5Engine, options: dict[str, object]) -> None:
    """Each DiT block (one graph shared by all 22): ~20x less to compile; no CUDA graphs, glue stays eager."""
    for block in engine.model.transformer.transformer_blocks:
        block.compile(**options)
    engine.step = engine.step_eager


def compile_captured(engine: F5Engine, options: dict[str, object]) -> None:
    """DiT blocks and input embedding compiled (no CUDA graphs), then the engine's own graphs per bucket."""
    compile_blocks(engine, options)
    engine.model.transformer.input_embed.compile(**options)
    attach_captured(engine)


def attach_captured(engine: F5Engine) -> None:
    """The engine's own CUDA graphs per bucket, over whatever the blocks now run (captured while warming)."""
    engine.captured = CapturedGraphs(engine.model.transformer, engine.step_eager, engine.rotary, engine.device,
                                     engine.dtype, capture_for(engine.device))


def compile_aot(engine: F5Engine, options: dict[str, object]) -> None:
    """DiT blocks and input embedding from AOTInductor packages (built once, then loaded), then our own graphs."""
    from ishowttsd.engine.aot import AotUnusable, install_aot

    if options.get("backend") != "inductor":  # the spec's backend, or the compile_failure fault's
        raise ValueError(f"compile_scope 'aot' compiles with Inductor, not {options.get('backend')!r}")
    try:
        install_aot(engine.model.transformer, engine.rotary, engine.device, engine.dtype,
                    aot_cache_dir(engine.spec), 2 * engine.spec.max_batch, aot_frames(engine.spec))
    except AotUnusable as exc:  # a package this torch cannot build or load: the JIT-compiled scope instead
        engine.compile_note = f"aot packages unusable, scope captured instead: {exc}"[:2000]
        compile_captured(engine, options)
        return
    attach_captured(engine)


def aot_cache_dir(spec: EngineSpec) -> str:
    return f"{spec.cache_dir}/compile/aot"


def aot_frames(spec: EngineSpec) -> tuple[int, int]:
    widths = shape_buckets(spec)
    return min(widths), max(widths)


def uncompile_blocks(engine: F5Engine) -> None:
    from ishowttsd.engine.aot import uninstall

    modules = (*engine.model.transformer.transformer_blocks, engine.model.transformer.input_embed)
    for block in modules:
        block._compiled_call_impl = None
    uninstall(modules)


SCOPES = {"step": compile_step, "blocks": compile_blocks, "captured": compile_captured, "aot": compile_aot}


def fall_back_to_eager(engine: F5Engine, reason: str) -> None:
    uncompile_blocks(engine)
    engine.step, engine.backbone, engine.head = engine.step_eager, engine.vocoder.backbone, engine.vocoder.head
    engine.before_step, engine.captured = lambda: None, None
    engine.shapes, engine.compiled, engine.compile_error = None, False, reason


def warm_references(ref: Reference, widths: tuple[int, ...]) -> list[tuple[Reference, int]]:
    """(reference cropped to fit, width) for each bucket: every width is warmed whatever the voice."""
    return [(replace(ref, mel=ref.mel[: max(1, min(ref.mel.shape[0], width // 2))]), width) for width in widths]


def warm_engine(engine: F5Engine, ref: Reference, progress: Callable[[], None]) -> float:
    """Run every (rows, width) bucket and a few vocoder lengths; returns the seconds it took."""
    started = time.monotonic()
    if engine.shapes is None:
        return 0.0
    nfe = WARM_NFE if engine.captured is None else CAPTURED_CHECK_NFE
    for cropped, width in warm_references(ref, engine.shapes.widths):
        for rows in engine.shapes.rows:
            if engine.captured is not None:
                engine.captured.add(rows, width)
            generators = [torch.Generator(device=engine.device).manual_seed(i) for i in range(rows)]
            engine.sample([cropped] * rows, ["Warm up."] * rows, [width] * rows, nfe, generators, progress)
    for frames in (*VOCODER_WARM_FRAMES, max(engine.shapes.widths)):
        engine.vocode(torch.randn(frames, engine.model.num_channels, device=engine.device))
        progress()
    return time.monotonic() - started
