"""Messages exchanged with the engine worker over a multiprocessing pipe.

Plain frozen dataclasses (picklable, no torch). The main process sends Job, Cancel, Ping, Profile,
Retire and Fault; the worker answers with Ready, Chunk, Done, Error, Pong, ProfileDone and BootFailed.
Deadlines are time.monotonic() values: CLOCK_MONOTONIC is one clock for every process of the host.
Audio travels as 16-bit little-endian mono PCM at SAMPLE_RATE.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

SAMPLE_RATE = 24_000
SAMPLE_WIDTH = 2  # bytes per sample (int16)

# Exit code of a worker that cannot boot (bad checkpoint, missing files): not restarted in a loop.
EXIT_BOOT_FAILURE = 3


@dataclass(frozen=True, slots=True)
class VoiceRef:
    """A reference voice as the worker needs it: audio file + transcript.

    `version` changes whenever the audio or transcript file changes (a digest of their mtime, inode
    and size), so the worker's cached reference mel for `name` is recomputed.
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
    deadline_s: float = math.inf  # monotonic; the worker drops the job unstarted once it passes


@dataclass(frozen=True, slots=True)
class Cancel:
    """The client gave up on this job (disconnect, deadline): drop it, discard its output."""

    job_id: int


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
    batch_size: int = 1  # most items any of its chunks was batched with (itself included)


@dataclass(frozen=True, slots=True)
class Error:
    job_id: int
    code: str  # "bad_input" (caller's fault), "deadline" (dropped unstarted) or "engine" (ours)
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
    batches_run: int = 0
    items_run: int = 0  # chunks synthesised; items_run / batches_run = mean batch size
    jobs_cancelled: int = 0
    jobs_expired: int = 0
    compiles_after_ready: int = 0  # graphs compiled while serving (should stay 0 when compiled)


@dataclass(frozen=True, slots=True)
class Ready:
    model: str
    device: str
    dtype: str
    compiled: bool
    compile_error: str = ""
    boot_s: float = 0.0
    warm_s: float = 0.0  # of boot_s: warming every shape bucket
    warm_graphs: int = 0  # graphs compiled while warming (a warm compile cache makes each cheap)
    buckets: tuple[int, ...] = ()  # frame widths served compiled; () = eager, unpadded
    max_batch: int = 1
    compile_note: str = ""  # compiled, but not as configured (e.g. aot packages unusable: scope captured), and why


@dataclass(frozen=True, slots=True)
class BootFailed:
    reason: str


@dataclass(frozen=True, slots=True)
class Profile:
    """Record a torch profiler trace of the next `batches` batches into `path` (Chrome trace JSON)."""

    request_id: int
    path: str
    batches: int = 5


@dataclass(frozen=True, slots=True)
class ProfileDone:
    request_id: int
    path: str
    error: str = ""


@dataclass(frozen=True, slots=True)
class Retire:
    """Finish the job in hand, then exit 0."""


@dataclass(frozen=True, slots=True)
class Fault:
    """Test-only fault injection; ignored unless the daemon runs with fault_injection = true."""

    kind: str  # "hang", "grow_memory", "slow", "crash", "fail_jobs"
    amount: float = 0.0
    extra: dict[str, str] = field(default_factory=dict)
