"""Several engine workers behind one queue: which devices get a worker, which worker gets a job.

Pure: no torch, no I/O. The daemon resolves `[engine] devices` once at start (resolve_devices);
the engine client asks `pick_worker` for every waiting job it hands over, and `engine_state`
folds the per-worker states into the one state /readyz, STATUS= and the watchdog reason about.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

# (nfe, length class): jobs with the same key land in the same shape bucket inside a worker.
BatchKey = tuple[int, int]
# Coarse first-chunk length classes (UTF-8 bytes): a job's first chunk is min(text, max_chunk_bytes).
LENGTH_CLASS_BOUNDS = (24, 48, 96)
ALL_DEVICES = "all"


def resolve_devices(setting: tuple[str, ...] | str, default_device: str, gpu_count: int) -> tuple[str, ...]:
    """`[engine] devices` → one device string per worker.

    () → one worker on `default_device` (the single-worker daemon); "all" → cuda:0..cuda:N-1, or
    one CPU worker when no GPU is visible; a list is taken as it is (a device may repeat).
    """
    if setting == ALL_DEVICES:
        return tuple(f"cuda:{index}" for index in range(gpu_count)) or ("cpu",)
    return tuple(setting) or (default_device,)


def visible_gpu_count(cuda_visible_devices: str | None, nvml_count: int) -> int:
    """GPUs a CUDA process would see: CUDA_VISIBLE_DEVICES (when set) limits NVML's count.

    CUDA stops at the first invalid entry ("-1", "" or a bad index) — so does this count.
    """
    if cuda_visible_devices is None:
        return nvml_count
    seen = 0
    for entry in cuda_visible_devices.split(","):
        entry = entry.strip()
        if not entry or entry.startswith("-") or (entry.isdigit() and int(entry) >= nvml_count):
            break
        seen += 1
    return min(seen, nvml_count)


def length_class(text_bytes: int, max_chunk_bytes: int) -> int:
    """Which coarse length class a job's first chunk falls in (0 = shortest)."""
    first_chunk = min(text_bytes, max_chunk_bytes)
    return sum(1 for bound in LENGTH_CLASS_BOUNDS if first_chunk > bound)


def batch_key(nfe: int, text: str, max_chunk_bytes: int) -> BatchKey:
    return nfe, length_class(len(text.encode("utf-8")), max_chunk_bytes)


@dataclass(frozen=True, slots=True)
class WorkerLoad:
    """One worker as dispatch sees it: serving or not, jobs in hand, keys of jobs not started yet,
    and its batch size (max_batch: jobs it can run together)."""

    serving: bool
    in_flight: int
    limit: int
    pending_keys: tuple[BatchKey, ...] = field(default=())
    batch_size: int = 1

    @property
    def has_room(self) -> bool:
        return self.serving and self.in_flight < self.limit

    @property
    def load_class(self) -> int:
        """Whole batches in hand: workers in the same class are equally loaded for dispatch."""
        return self.in_flight // max(1, self.batch_size)


def pick_worker(loads: Sequence[WorkerLoad], key: BatchKey) -> int | None:
    """The worker to hand a job of `key` to; None when none is serving with room.

    The least loaded in whole batches first; among those, one already holding unstarted jobs of
    the same key (they batch together), then the fewest jobs in hand; ties go to the lowest index.
    So a burst fills one batch per worker rather than piling onto one worker or splitting batches.
    """
    open_workers = [index for index, load in enumerate(loads) if load.has_room]
    if not open_workers:
        return None
    return min(open_workers, key=lambda i: (loads[i].load_class, key not in loads[i].pending_keys,
                                            loads[i].in_flight, i))


@dataclass(frozen=True, slots=True)
class SlotState:
    """One worker slot's state for the engine-wide summary."""

    label: str  # "worker 1 (cuda:1)"
    state: str
    detail: str
    serving: bool


# A slot in these states is not serving; worded for STATUS= and /v1/status.
NOT_SERVING_WORDS = {"failed": "out of rotation", "restarting": "restarting", "starting": "starting",
                     "recycling": "recycling", "stopped": "stopped", "stopping": "stopping"}
BUSY_ORDER = ("recycling", "restarting", "starting")


def slot_problem(slot: SlotState) -> str:
    """"worker 1 (cuda:1) out of rotation: <reason>" ('' for a slot serving without trouble)."""
    if slot.serving and slot.state == "ready":
        return ""
    words = NOT_SERVING_WORDS.get(slot.state, slot.state)
    return f"{slot.label} {words}: {slot.detail}".rstrip(": ")


def engine_state(slots: Sequence[SlotState]) -> tuple[str, str]:
    """The engine's (state, detail) from its slots: one slot is itself; N slots are "ready" while
    any serves (detail names the others), "failed" only when every slot is."""
    if len(slots) == 1:
        return slots[0].state, slots[0].detail
    detail = "; ".join(filter(None, map(slot_problem, slots)))
    states = {slot.state for slot in slots}
    if any(slot.serving for slot in slots):
        return ("recycling" if "recycling" in states else "ready"), detail
    if states == {"failed"}:
        return "failed", f"every worker out of rotation: {detail}"
    return next((s for s in BUSY_ORDER if s in states), slots[0].state), detail
