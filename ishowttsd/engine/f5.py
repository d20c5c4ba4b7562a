"""The F5-TTS engine: load through f5-tts, sample batches with our own loop, vocode with Vocos.

Loading reuses f5-tts's `load_model` / `load_vocoder` (explicit device and dtype). Sampling does
not use `infer_process` (prints, tqdm, per-call thread pools, unbounded caches, global RNG): it runs
its own Euler loop of `FlowStep`s (engine/flow.py), the same arithmetic as `CFM.sample` with the
time grid kept in float32 and the noise drawn from a per-request torch.Generator.

A batch holds chunks of several jobs (same NFE). Eager, it runs at the widest item's frame count;
compiled (engine/compiled.py), it is padded to a warmed (rows, width) bucket so no shape is new
after Ready. Padding is masked, so an item's audio does not depend on what it was batched with.
"""

from __future__ import annotations

import contextlib
import io
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import soundfile
import torch
import torch.nn.functional as F
import torchaudio.functional as AF
from f5_tts.infer.utils_infer import load_model, load_vocoder
from f5_tts.model import DiT
from f5_tts.model.utils import convert_char_to_pinyin, list_str_to_idx

from ishowttsd.engine.batcher import bucket_for, estimate_frames, split_text
from ishowttsd.engine.captured import CapturedGraphs
from ishowttsd.engine.flow import FlowStep, install_masked_attention, rotary_freqs, text_embeddings, time_grid
from ishowttsd.engine.joiner import CrossfadeJoiner, to_pcm16
from ishowttsd.engine.loading import BootError, resolve_device, resolve_dtype, resolve_files
from ishowttsd.engine.posconv import use_position_conv
from ishowttsd.engine.protocol import SAMPLE_RATE, Job, VoiceRef
from ishowttsd.engine.shapes import Layout, Shapes
from ishowttsd.engine.spec import EngineSpec

__all__ = ["BadInput", "BootError", "F5Engine", "Prepared", "Shapes"]
TARGET_RMS = 0.1
REFERENCE_CACHE_SIZE = 16
MIN_FIRST_CHUNK_BYTES = 10  # shorter text is spoken at speed 0.3 by f5-tts's duration rule


class BadInput(Exception):
    """The job's input cannot be synthesised (caller's fault)."""


@dataclass(frozen=True)
class Reference:
    mel: torch.Tensor  # (frames, n_mels) float32 on the device
    rms: float
    text: str


@dataclass
class Prepared:
    """One job as the worker runs it: its text chunks, their frame counts, its own noise generator."""

    job: Job
    ref: Reference
    chunks: list[str]
    frames: list[int]  # total frames (reference + generated) per chunk
    generator: torch.Generator
    gain: float  # undo the loudness normalisation of a quiet reference


@dataclass(frozen=True)
class BatchOutput:
    waves: list[np.ndarray]  # float audio per item, in input order
    synth_s: float  # wall time of the whole batch (sampling + vocoding)
    vocoder_s: float


@dataclass(frozen=True)
class JobStats:
    samples: int
    synth_s: float
    vocoder_s: float


class F5Engine:
    """A loaded model + vocoder that turns batches of text chunks into 24 kHz audio."""

    def __init__(self, spec: EngineSpec, model: torch.nn.Module, vocoder: torch.nn.Module,
                 device: torch.device, dtype: torch.dtype) -> None:
        self.spec, self.model, self.vocoder = spec, model, vocoder
        self.device, self.dtype = device, dtype
        install_masked_attention(model.transformer)
        self.step_eager = FlowStep(model.transformer, spec.cfg_strength, dtype)
        self.step: Callable[..., torch.Tensor] = self.step_eager
        self.backbone: Callable[..., torch.Tensor] = vocoder.backbone
        self.head: Callable[..., torch.Tensor] = vocoder.head
        self.shapes: Shapes | None = None  # None: eager, unpadded
        self.compiled, self.compile_error = False, ""
        self.compile_note = ""  # compiled, but not as configured (e.g. aot packages unusable), and why
        self.before_step: Callable[[], None] = lambda: None  # CUDA-graph step marker when compiled
        self.captured: CapturedGraphs | None = None  # compile_scope "captured": the engine's own CUDA graphs
        self._references: OrderedDict[tuple[str, int], Reference] = OrderedDict()
        self._freqs: dict[int, torch.Tensor] = {}

    @classmethod
    def load(cls, spec: EngineSpec) -> F5Engine:
        if spec.cpu_threads:
            torch.set_num_threads(spec.cpu_threads)
        device = resolve_device(spec.device)
        dtype = resolve_dtype(spec.dtype, device)
        ckpt, vocab, vocoder_dir, model_cfg = resolve_files(spec)
        # f5-tts prints on load. Built on the device: the random init that the checkpoint then overwrites
        # runs there (seconds faster on a GPU than on the host for F5TTS_v1_Base).
        with contextlib.redirect_stdout(io.StringIO()), torch.device(device):
            try:
                model = load_model(DiT, model_cfg, str(ckpt), mel_spec_type="vocos", vocab_file=str(vocab),
                                   ode_method="euler", use_ema=True, device=str(device))
                vocoder = load_vocoder("vocos", is_local=True, local_path=str(vocoder_dir), device=str(device))
            except (RuntimeError, KeyError, OSError, ValueError) as exc:
                raise BootError(f"cannot load {spec.model} from {ckpt}: {exc}") from exc
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = spec.cudnn_benchmark  # shapes are bucketed: tune once per shape
        use_position_conv(model, spec.position_conv)
        return cls(spec, model.to(dtype).eval(), vocoder.eval(), device, dtype)

    # ---- references and jobs -----------------------------------------------------------------
    def reference(self, voice: VoiceRef) -> Reference:
        key = (voice.name, voice.version)
        if key not in self._references:
            self._references[key] = self._load_reference(voice)
            while len(self._references) > REFERENCE_CACHE_SIZE:
                self._references.popitem(last=False)
        self._references.move_to_end(key)
        return self._references[key]

    def _load_reference(self, voice: VoiceRef) -> Reference:
        audio, rate = soundfile.read(voice.audio_path, dtype="float32", always_2d=True)
        wave = torch.from_numpy(audio.mean(axis=1)).unsqueeze(0)
        rms = float(torch.sqrt(torch.mean(wave**2)))
        if 0 < rms < TARGET_RMS:
            wave = wave * TARGET_RMS / rms
        if rate != SAMPLE_RATE:
            wave = AF.resample(wave, rate, SAMPLE_RATE)
        with torch.inference_mode():
            mel = self.model.mel_spec(wave.to(self.device)).permute(0, 2, 1)[0].float()
        text = voice.ref_text.strip()
        text = text + " " if text.endswith(".") else text if text.endswith("。") else text + ". "
        return Reference(mel=mel, rms=rms, text=text)

    def prepare(self, job: Job) -> Prepared:
        """Split the job's text (a short first chunk when streaming) and size every chunk."""
        ref, spec = self.reference(job.voice), self.spec
        first = first_chunk_limit(spec) if job.stream else None
        chunks = split_text(job.text, spec.max_chunk_bytes, first)
        if not chunks:
            raise BadInput("the text is empty")
        ref_bytes, ref_frames = len(ref.text.encode()), ref.mel.shape[0]
        frames = [estimate_frames(ref_frames, ref_bytes, len(c.encode()), job.speed) for c in chunks]
        generator = torch.Generator(device=self.device).manual_seed(job.seed)
        gain = ref.rms / TARGET_RMS if 0 < ref.rms < TARGET_RMS else 1.0
        return Prepared(job, ref, chunks, frames, generator, gain)

    def run_batch(self, items: Sequence[tuple[Prepared, int]], nfe: int,
                  progress: Callable[[], None] = lambda: None) -> BatchOutput:
        """Chunk `index` of each prepared job, sampled together, then vocoded one by one."""
        start = time.perf_counter()
        mels = self.sample([p.ref for p, _ in items], [p.chunks[k] for p, k in items],
                           [p.frames[k] for p, k in items], nfe, [p.generator for p, _ in items], progress)
        vocoding = time.perf_counter()
        waves = [self.vocode(mel) * prepared.gain for mel, (prepared, _) in zip(mels, items, strict=True)]
        end = time.perf_counter()
        return BatchOutput(waves, end - start, end - vocoding)

    def synthesize(self, job: Job, emit: Callable[[bytes], None], progress: Callable[[], None]) -> JobStats:
        """One job alone, chunk by chunk (warm-up, quality checks, direct benchmarks)."""
        prepared = self.prepare(job)
        joiner = CrossfadeJoiner(int(self.spec.crossfade_ms * SAMPLE_RATE / 1000))
        start, vocoder_s, samples = time.perf_counter(), 0.0, 0
        for index in range(len(prepared.chunks)):
            out = self.run_batch([(prepared, index)], job.nfe, progress)
            vocoder_s += out.vocoder_s
            samples += _emit(joiner.push(out.waves[0]), emit)
        samples += _emit(joiner.finish(), emit)
        return JobStats(samples, time.perf_counter() - start, vocoder_s)

    # ---- sampling ------------------------------------------------------------------------------
    def padded_shape(self, widest: int, items: int) -> tuple[int, int, bool]:
        """(width, rows, compiled step?) for a batch: a warmed bucket when compiled and it fits."""
        width = bucket_for(widest, self.shapes.widths) if self.shapes else None
        rows = bucket_for(items, self.shapes.rows) if self.shapes else None
        if width is None or rows is None:
            return widest, items, False
        return width, rows, True

    def layout(self, refs: list[Reference], durations: list[int]) -> Layout:
        lens = [r.mel.shape[0] for r in refs]
        totals = [max(d, n + 1) for d, n in zip(durations, lens, strict=True)]
        width, rows, compiled = self.padded_shape(max(totals), len(refs))
        filler = rows - len(refs)  # filler rows repeat item 0; their output is dropped
        return Layout(len(refs), rows, width, lens + lens[:1] * filler, totals + totals[:1] * filler, compiled)

    @torch.inference_mode()
    def sample(self, refs: list[Reference], texts: list[str], durations: list[int], nfe: int,
               generators: list[torch.Generator], progress: Callable[[], None] = lambda: None) -> list[torch.Tensor]:
        """Batched CFM sampling (Euler, CFG, sway, EPSS grid) → generated mels (frames, n_mels) per item."""
        shape = self.layout(refs, durations)
        refs, texts = shape.padded(refs), shape.padded(texts)
        cond, cond_mask = self._conditioning(refs, shape)
        total_t = torch.tensor(shape.totals, device=self.device)
        x = self._noise(shape.totals[: shape.count], shape.width, shape.rows, generators)
        tokens = self._tokens(refs, texts)
        if shape.compiled and self.captured is not None and self.captured.has(shape.rows, shape.width):
            out = self.captured.run(tokens, total_t, cond, x, self._grid(nfe), progress)
        else:
            out = self._uncaptured(shape, tokens, total_t, cond, x, nfe, progress)
        out = torch.where(cond_mask, cond.float(), out)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)  # so the vocoder's time is its own
        return [out[b, shape.lens[b] : shape.totals[b]] for b in range(shape.count)]

    def _conditioning(self, refs: list[Reference], shape: Layout) -> tuple[torch.Tensor, torch.Tensor]:
        """The reference mels padded to the width (zeros past each reference) and where they are."""
        cond = torch.stack([F.pad(r.mel, (0, 0, 0, shape.width - r.mel.shape[0])) for r in refs]).to(self.dtype)
        lens = torch.tensor(shape.lens, device=self.device)
        cond_mask = (torch.arange(shape.width, device=self.device)[None, :] < lens[:, None]).unsqueeze(-1)
        return torch.where(cond_mask, cond, torch.zeros_like(cond)), cond_mask

    def _tokens(self, refs: list[Reference], texts: list[str]) -> torch.Tensor:
        chars = convert_char_to_pinyin([r.text + t for r, t in zip(refs, texts, strict=True)])
        return list_str_to_idx(chars, self.model.vocab_char_map).to(self.device)

    def _grid(self, nfe: int) -> torch.Tensor:
        return time_grid(nfe, self.spec.sway_sampling_coef, self.device)

    def _uncaptured(self, shape: Layout, tokens: torch.Tensor, total_t: torch.Tensor, cond: torch.Tensor,
                    x: torch.Tensor, nfe: int, progress: Callable[[], None]) -> torch.Tensor:
        """Text embedding and steps called one by one (eager, or the dynamo-compiled step)."""
        mask = None if shape.exact else torch.arange(shape.width, device=self.device)[None, :] < total_t[:, None]
        lens = None if shape.exact else total_t
        text_cond, text_uncond = text_embeddings(self.model.transformer, tokens, lens, shape.width)
        return self._integrate(x, cond, text_cond, text_uncond, self.rotary(shape.width), mask, nfe,
                               shape.compiled, progress)

    def _integrate(self, x: torch.Tensor, cond: torch.Tensor, text_cond: torch.Tensor, text_uncond: torch.Tensor,
                   freqs: torch.Tensor, mask: torch.Tensor | None, nfe: int, compiled: bool,
                   progress: Callable[[], None]) -> torch.Tensor:
        step = self.step if compiled else self.step_eager
        grid = self._grid(nfe)
        for i in range(nfe):
            if compiled:
                self.before_step()
            x = step(x, cond, text_cond, text_uncond, freqs, grid[i], grid[i + 1] - grid[i], mask)
            if compiled:
                x = x.clone()  # a CUDA graph's output is overwritten by its next replay
            progress()
        return x

    def _noise(self, totals: list[int], width: int, rows: int, generators: list[torch.Generator]) -> torch.Tensor:
        channels = self.model.num_channels
        noise = [torch.randn(n, channels, generator=g, device=self.device, dtype=self.dtype)
                 for n, g in zip(totals, generators, strict=True)]
        noise += [torch.zeros(1, channels, device=self.device, dtype=self.dtype)] * (rows - len(noise))
        return torch.stack([F.pad(n, (0, 0, 0, width - n.shape[0])) for n in noise]).float()

    def rotary(self, width: int) -> torch.Tensor:
        if width not in self._freqs:
            self._freqs[width] = rotary_freqs(self.model.transformer, width)
        return self._freqs[width]

    @torch.inference_mode()
    def vocode(self, mel: torch.Tensor) -> np.ndarray:
        wave = self.head(self.backbone(mel.float().T.unsqueeze(0).contiguous()))
        return wave.squeeze(0).float().cpu().numpy()

    # ---- housekeeping --------------------------------------------------------------------------
    def memory(self) -> tuple[int, int]:
        if self.device.type != "cuda":
            return 0, 0
        return torch.cuda.memory_allocated(self.device), torch.cuda.memory_reserved(self.device)

    def recover(self) -> None:
        """After a failed batch: drop the text-embedding cache f5-tts may keep between steps."""
        self.model.transformer.clear_cache()


def first_chunk_limit(spec: EngineSpec) -> int | None:
    """The byte limit of a streamed job's first chunk; None when short first chunks are off."""
    if spec.stream_first_chunk_bytes <= 0:
        return None
    return max(MIN_FIRST_CHUNK_BYTES, min(spec.stream_first_chunk_bytes, spec.max_chunk_bytes))


def _emit(audio: np.ndarray, emit: Callable[[bytes], None]) -> int:
    if len(audio):
        emit(to_pcm16(audio))
    return len(audio)
