"""What the worker needs to know to load and run the engine (picklable, no torch)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

TINY = "tiny"
BASE = "F5TTS_v1_Base"
RANDOM_PREFIX = "random:"


@dataclass(frozen=True, slots=True)
class EngineSpec:
    model: str  # "tiny", "F5TTS_v1_Base", "random:F5TTS_v1_Base" or a checkpoint path
    cache_dir: str  # built models and the compile cache live here (under the state dir)
    vocab_file: str = ""
    vocoder_dir: str = ""
    allow_download: bool = False
    device: str = "auto"
    dtype: str = "auto"
    compile: bool = False
    nfe: int = 8
    cfg_strength: float = 2.0
    sway_sampling_coef: float = -1.0
    max_chunk_bytes: int = 135
    crossfade_ms: float = 150.0
    warmup_voice: Any = None  # a protocol.VoiceRef synthesised once before Ready
    fault_injection: bool = False
    fault_compile_failure: bool = False  # test-only (faults.py compile_failure): compiling fails
    # batching and shapes (see engine/batcher.py)
    max_batch: int = 8
    busy_fill_ms: float = 5.0  # after a batch of 2+ items, wait this long for a fuller next batch
    batch_window_ms: float = 0.0  # 0: an idle worker starts at once; work arriving meanwhile is batched
    max_frames: int = 2048
    min_frames: int = 256
    bucket_growth: float = 1.5
    stream_first_chunk_bytes: int = 0  # 0 = off: a streamed answer is chunked like a buffered one
    stream_margin_ms: float = 500.0  # a started stream's next chunk is needed this long before its audio runs out
    # compilation (only with compile = true)
    compile_mode: str = "reduce-overhead"
    compile_backend: str = "inductor"
    compile_scope: str = "captured"  # "captured" (engine/captured.py), "step" (dynamo CUDA graphs), "blocks"
    cudnn_benchmark: bool = False  # on: cuDNN re-tunes for every new text-embedding length (seen 0.4 s stalls)
    position_conv: str = "conv1d"  # "conv1d" (f5-tts as is) or "gemm" (engine/posconv.py)
    cpu_threads: int = 0  # torch intra-op threads in the worker; 0 = torch's default (one per core)

    @property
    def random_weights(self) -> bool:
        return self.model.startswith(RANDOM_PREFIX) or self.model == TINY


# [engine] batching, shape and compile keys copied as they are into the spec.
TUNING_KEYS = ("max_batch", "batch_window_ms", "busy_fill_ms", "max_frames", "min_frames", "bucket_growth",
               "stream_first_chunk_bytes", "stream_margin_ms", "compile_mode", "compile_backend", "compile_scope",
               "cudnn_benchmark", "position_conv", "cpu_threads")


def spec_from_config(cfg: Any, warmup_voice: Any = None) -> EngineSpec:
    """Build the spec from a loaded ishowttsd Config."""
    engine = cfg.engine
    return EngineSpec(
        model=engine.model,
        cache_dir=f"{cfg.daemon.state_dir}/models",
        vocab_file=engine.vocab_file,
        vocoder_dir=engine.vocoder_dir,
        allow_download=engine.allow_download,
        device=engine.device,
        dtype=engine.dtype,
        compile=engine.compile,
        nfe=engine.nfe,
        cfg_strength=engine.cfg_strength,
        sway_sampling_coef=engine.sway_sampling_coef,
        max_chunk_bytes=engine.max_chunk_bytes,
        crossfade_ms=engine.crossfade_ms,
        warmup_voice=warmup_voice,
        fault_injection=cfg.daemon.fault_injection,
        **{key: getattr(engine, key) for key in TUNING_KEYS},
    )


def shape_buckets(spec: EngineSpec) -> tuple[int, ...]:
    """The frame-width buckets the worker pads to (and, compiled, warms before Ready)."""
    from ishowttsd.engine.batcher import default_buckets

    return default_buckets(spec.max_frames, min_frames=min(spec.min_frames, spec.max_frames),
                           growth=spec.bucket_growth)
