"""The F5-TTS engine: load through f5-tts, sample with our own loop, vocode with Vocos.

Loading reuses f5-tts's `load_model` / `load_vocoder` (explicit device and dtype). Sampling does
not use `infer_process` (prints, tqdm, per-call thread pools, unbounded caches, global RNG): it runs
its own Euler loop over CFM's transformer, the same arithmetic as `CFM.sample` with the time grid
kept in float32 and the noise drawn from a per-request torch.Generator.
"""

from __future__ import annotations

import contextlib
import io
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile
import torch
import torch.nn.functional as F
import torchaudio.functional as AF
from f5_tts.infer.utils_infer import load_model, load_vocoder
from f5_tts.model import DiT
from f5_tts.model.utils import convert_char_to_pinyin, get_epss_timesteps, lens_to_mask, list_str_to_idx

from ishowttsd.engine import tiny
from ishowttsd.engine.batcher import estimate_frames, split_text
from ishowttsd.engine.joiner import CrossfadeJoiner, to_pcm16
from ishowttsd.engine.protocol import SAMPLE_RATE, Job, VoiceRef
from ishowttsd.engine.spec import BASE, RANDOM_PREFIX, TINY, EngineSpec

HOP = 256
TARGET_RMS = 0.1
REFERENCE_CACHE_SIZE = 16
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
HUB_CKPT = ("SWivid/F5-TTS", "F5TTS_v1_Base/model_1250000.safetensors")
HUB_VOCOS = "charactr/vocos-mel-24khz"


class BootError(Exception):
    """The engine cannot load (missing or broken weights, bad device): not worth restarting."""


class BadInput(Exception):
    """The job's input cannot be synthesised (caller's fault)."""


@dataclass(frozen=True)
class Reference:
    mel: torch.Tensor  # (frames, n_mels) float32 on the device
    rms: float
    text: str


@dataclass(frozen=True)
class JobStats:
    samples: int
    synth_s: float
    vocoder_s: float


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise BootError(f"device {name!r} requested but CUDA is not available")
    return torch.device(name)


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    if name != "auto":
        return DTYPES[name]
    if device.type == "cuda" and torch.cuda.get_device_properties(device).major >= 7:
        return torch.float16
    return torch.float32


def hub_file(repo: str, filename: str, allow_download: bool) -> Path:
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(repo, filename, local_files_only=not allow_download))
    except Exception as exc:  # noqa: BLE001 - the hub raises many types; all mean "not available"
        hint = "" if allow_download else " (allow_download = false: only the local hub cache is searched)"
        raise BootError(f"cannot get {repo}/{filename}{hint}: {exc}") from exc


def resolve_files(spec: EngineSpec) -> tuple[Path, Path, Path, dict[str, object]]:
    """→ (checkpoint, vocab file, vocoder dir, DiT arguments) for the spec's model."""
    cache = Path(spec.cache_dir)
    if spec.model == TINY or spec.model == RANDOM_PREFIX + BASE:
        built = tiny.build_tiny(cache) if spec.model == TINY else tiny.build_random_base(cache)
        return built.ckpt_path, built.vocab_file, built.vocoder_dir, built.model_cfg
    ckpt = hub_file(*HUB_CKPT, spec.allow_download) if spec.model == BASE else Path(spec.model)
    if not ckpt.is_file():
        raise BootError(f"checkpoint {ckpt} does not exist")
    vocoder = Path(spec.vocoder_dir) if spec.vocoder_dir else hub_file(HUB_VOCOS, "config.yaml",
                                                                      spec.allow_download).parent
    if not spec.vocoder_dir:
        hub_file(HUB_VOCOS, "pytorch_model.bin", spec.allow_download)
    vocab = Path(spec.vocab_file) if spec.vocab_file else tiny.shipped_vocab()
    return ckpt, vocab, vocoder, tiny.base_arch()


class F5Engine:
    """A loaded model + vocoder that turns Jobs into 24 kHz PCM, chunk by chunk."""

    def __init__(self, spec: EngineSpec, model: torch.nn.Module, vocoder: torch.nn.Module,
                 device: torch.device, dtype: torch.dtype) -> None:
        self.spec, self.model, self.vocoder = spec, model, vocoder
        self.device, self.dtype = device, dtype
        self.compiled, self.compile_error = False, ""
        self._references: OrderedDict[tuple[str, int], Reference] = OrderedDict()

    @classmethod
    def load(cls, spec: EngineSpec) -> F5Engine:
        device = resolve_device(spec.device)
        dtype = resolve_dtype(spec.dtype, device)
        ckpt, vocab, vocoder_dir, model_cfg = resolve_files(spec)
        with contextlib.redirect_stdout(io.StringIO()):  # f5-tts prints on load
            try:
                model = load_model(DiT, model_cfg, str(ckpt), mel_spec_type="vocos", vocab_file=str(vocab),
                                   ode_method="euler", use_ema=True, device=str(device))
                vocoder = load_vocoder("vocos", is_local=True, local_path=str(vocoder_dir), device=str(device))
            except (RuntimeError, KeyError, OSError, ValueError) as exc:
                raise BootError(f"cannot load {spec.model} from {ckpt}: {exc}") from exc
        return cls(spec, model.to(dtype).eval(), vocoder.eval(), device, dtype)

    def compile(self) -> None:
        """torch.compile the DiT and the vocoder's backbone/head; eager fallback on any failure (R24)."""
        try:
            self.model.transformer = torch.compile(self.model.transformer, dynamic=True)
            self.vocoder.backbone = torch.compile(self.vocoder.backbone, dynamic=True)
            self.vocoder.head = torch.compile(self.vocoder.head, dynamic=True)
            self.compiled = True
        except Exception as exc:  # noqa: BLE001 - any compile failure means eager
            self.compile_error = f"{type(exc).__name__}: {exc}"

    def fall_back_to_eager(self, reason: str) -> None:
        self.model.transformer = getattr(self.model.transformer, "_orig_mod", self.model.transformer)
        self.vocoder.backbone = getattr(self.vocoder.backbone, "_orig_mod", self.vocoder.backbone)
        self.vocoder.head = getattr(self.vocoder.head, "_orig_mod", self.vocoder.head)
        self.compiled, self.compile_error = False, reason

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

    def synthesize(self, job: Job, emit: Callable[[bytes], None], progress: Callable[[], None]) -> JobStats:
        ref = self.reference(job.voice)
        generator = torch.Generator(device=self.device).manual_seed(job.seed)
        joiner = CrossfadeJoiner(int(self.spec.crossfade_ms * SAMPLE_RATE / 1000))
        start, vocoder_s, samples = time.perf_counter(), 0.0, 0
        for piece in split_text(job.text, self.spec.max_chunk_bytes):
            frames = estimate_frames(ref.mel.shape[0], len(ref.text.encode()), len(piece.encode()), job.speed)
            mel = self.sample([ref], [piece], [frames], job.nfe, [generator], progress)[0]
            t0 = time.perf_counter()
            wave = self.vocode(mel) * (ref.rms / TARGET_RMS if 0 < ref.rms < TARGET_RMS else 1.0)
            vocoder_s += time.perf_counter() - t0
            samples += self._emit(joiner.push(wave), emit)
        samples += self._emit(joiner.finish(), emit)
        return JobStats(samples, time.perf_counter() - start, vocoder_s)

    @staticmethod
    def _emit(audio: np.ndarray, emit: Callable[[bytes], None]) -> int:
        if len(audio):
            emit(to_pcm16(audio))
        return len(audio)

    @torch.inference_mode()
    def sample(self, refs: list[Reference], texts: list[str], durations: list[int], nfe: int,
               generators: list[torch.Generator], progress: Callable[[], None] = lambda: None) -> list[torch.Tensor]:
        """Batched CFM sampling (Euler, CFG, sway, EPSS grid) → generated mels (frames, n_mels) per item."""
        lens = torch.tensor([r.mel.shape[0] for r in refs], device=self.device)
        total = torch.maximum(torch.tensor(durations, device=self.device), lens + 1)
        width = int(total.max())
        cond = torch.stack([F.pad(r.mel, (0, 0, 0, width - r.mel.shape[0])) for r in refs]).to(self.dtype)
        cond_mask = lens_to_mask(lens, width).unsqueeze(-1)
        step_cond = torch.where(cond_mask, cond, torch.zeros_like(cond))
        text = list_str_to_idx(convert_char_to_pinyin([r.text + t for r, t in zip(refs, texts)]),
                               self.model.vocab_char_map).to(self.device)
        mask = lens_to_mask(total) if len(refs) > 1 else None
        x = self._noise(total, width, generators)
        grid = self._time_grid(nfe)
        for i in range(nfe):
            x = x + (grid[i + 1] - grid[i]) * self._flow(x, step_cond, text, grid[i], mask)
            progress()
        self.model.transformer.clear_cache()
        out = torch.where(cond_mask, cond.float(), x)
        return [out[b, int(lens[b]) : int(total[b])] for b in range(len(refs))]

    def _noise(self, total: torch.Tensor, width: int, generators: list[torch.Generator]) -> torch.Tensor:
        noise = [torch.randn(int(n), self.model.num_channels, generator=g, device=self.device, dtype=self.dtype)
                 for n, g in zip(total, generators)]
        return torch.stack([F.pad(n, (0, 0, 0, width - n.shape[0])) for n in noise]).float()

    def _time_grid(self, nfe: int) -> torch.Tensor:
        t = get_epss_timesteps(nfe, device=self.device, dtype=torch.float32)
        coef = self.spec.sway_sampling_coef
        return t + coef * (torch.cos(torch.pi / 2 * t) - 1 + t)

    def _flow(self, x: torch.Tensor, cond: torch.Tensor, text: torch.Tensor, t: torch.Tensor,
              mask: torch.Tensor | None) -> torch.Tensor:
        pred = self.model.transformer(x=x.to(self.dtype), cond=cond, text=text, time=t.to(self.dtype),
                                      mask=mask, cfg_infer=True, cache=True)
        cond_pred, null_pred = torch.chunk(pred.float(), 2, dim=0)
        return cond_pred + (cond_pred - null_pred) * self.spec.cfg_strength

    @torch.inference_mode()
    def vocode(self, mel: torch.Tensor) -> np.ndarray:
        wave = self.vocoder.decode(mel.float().T.unsqueeze(0))
        return wave.squeeze(0).float().cpu().numpy()

    def memory(self) -> tuple[int, int]:
        if self.device.type != "cuda":
            return 0, 0
        return torch.cuda.memory_allocated(self.device), torch.cuda.memory_reserved(self.device)

    def recover(self) -> None:
        """After a failed job: drop the text-embedding cache f5-tts keeps between steps."""
        self.model.transformer.clear_cache()
