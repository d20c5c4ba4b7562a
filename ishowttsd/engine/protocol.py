"""Messages exchanged with the engine worker over a multiprocessing pipe.

Plain frozen dataclasses (picklable, no torch). The main process sends Job, Ping, Retire and
Fault; the worker answers with Ready, Chunk, Done, Error, Pong and BootFailed.
Audio travels as 16-bit little-endian mono PCM at SAMPLE_RATE.
"""

from __future__ import annotations

from dataclasses import dataclass, field

SAMPLE_RATE = 24_000
SAMPLE_WIDTH = 2  # bytes per sample (int16)

# Exit code of a worker that cannot boot (bad checkpoint, missing files): not restarted in a loop.
EXIT_BOOT_FAILURE = 3


@dataclass(frozen=True, slots=True)
class VoiceRef:
    """A reference voice as the worker needs it: audio file + transcript.

    `version` changes whenever the files change (mtime_ns), so the worker's cached reference
    mel for `name` is recomputed.
    """

    name: str
    audio_path: str
    ref_text: str
    version: int = 0


@dataclass(frozen=True, slots=True)
class Job:
    job_id: int
    text: str
    voice: VoiceRef
    nfe: int
    speed: float
    seed: int
    stream: bool = False


@dataclass(frozen=True, slots=True)
class Chunk:
    job_id: int
    index: int
    pcm: bytes


@dataclass(frozen=True, slots=True)
class Done:
    job_id: int
    samples: int
    synth_s: float
    vocoder_s: float = 0.0


@dataclass(frozen=True, slots=True)
class Error:
    job_id: int
    code: str  # "bad_input" (caller's fault) or "engine" (ours)
    message: str


@dataclass(frozen=True, slots=True)
class Ping:
    seq: int


@dataclass(frozen=True, slots=True)
class Pong:
    seq: int
    rss_bytes: int
    cuda_allocated_bytes: int = 0
    cuda_reserved_bytes: int = 0
    jobs_done: int = 0
    busy_job: int = 0  # job id in hand; -1 = work queued but not started; 0 = idle
    progress_age_s: float = 0.0  # seconds since the synthesis thread last made progress


@dataclass(frozen=True, slots=True)
class Ready:
    model: str
    device: str
    dtype: str
    compiled: bool
    compile_error: str = ""
    boot_s: float = 0.0


@dataclass(frozen=True, slots=True)
class BootFailed:
    reason: str


@dataclass(frozen=True, slots=True)
class Retire:
    """Finish the job in hand, then exit 0."""


@dataclass(frozen=True, slots=True)
class Fault:
    """Test-only fault injection; ignored unless the daemon runs with fault_injection = true."""

    kind: str  # "hang", "grow_memory", "slow", "crash", "fail_jobs"
    amount: float = 0.0
    extra: dict[str, str] = field(default_factory=dict)
