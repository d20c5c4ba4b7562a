"""Engine recycles asked for by jobs (leak R25, health R22, the optional daily recycle with jitter).

A recycle starts a new worker, warms it, switches and drains the old one (EngineClient.recycle).
Two workers at once need memory for two: `can_overlap` decides from the latest readings, and when
they cannot both fit the old worker drains first while the queue is held (overlap=False).
Only one recycle runs at a time; a second request while one runs is skipped, not queued.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import structlog

from ishowttsd.jobs.context import JobContext, JobOutcome, OutcomeStatus
from ishowttsd.jobs.sampler import Sampler

log = structlog.get_logger(__name__)
# Head-room asked for on top of the old worker's footprint before two workers may coexist.
OVERLAP_MARGIN = 1.2
# recycle() result (worked / failed / not attempted) → job outcome status
RECYCLE_STATUS: dict[bool | None, OutcomeStatus] = {True: "ok", False: "flagged", None: "skipped"}


@dataclass(frozen=True)
class MemoryPicture:
    """What decides whether a second worker fits next to the first (bytes; None = unknown)."""

    device: str | None
    worker_rss: int | None
    worker_gpu_reserved: int | None
    gpu_free: int | None
    host_available: int | None


def _fits(need: int | None, free: int | None) -> bool | None:
    if need is None or free is None:
        return None
    return free > need * OVERLAP_MARGIN


def can_overlap(picture: MemoryPicture) -> tuple[bool, str]:
    """True when a new worker can boot beside the old one: host memory always, GPU memory on CUDA.

    Unknown host memory does not block (the kernel would say); unknown GPU memory on a CUDA
    worker does (an OOM at boot would fail the recycle).
    """
    if _fits(picture.worker_rss, picture.host_available) is False:
        return False, f"host memory: {picture.host_available} B available < worker rss {picture.worker_rss} B"
    if picture.device is None or not picture.device.startswith("cuda"):
        return True, "cpu worker: host memory allows two workers"
    fits = _fits(picture.worker_gpu_reserved, picture.gpu_free)
    if fits is None:
        return False, "gpu memory unknown: draining first"
    if not fits:
        free, reserved = picture.gpu_free, picture.worker_gpu_reserved
        return False, f"gpu memory: {free} B free, not enough beside worker reserved {reserved} B"
    return True, "gpu memory allows two workers"


def _gpu_free(sampler: Sampler) -> int | None:
    frees = [gpu.memory_total_bytes - gpu.memory_used_bytes for gpu in sampler.gpus
             if gpu.memory_total_bytes is not None and gpu.memory_used_bytes is not None]
    return min(frees) if frees else None


class Recycler:
    """One engine recycle at a time, with overlap when memory allows."""

    def __init__(self, ctx: JobContext, sampler: Sampler) -> None:
        self.ctx, self.sampler = ctx, sampler
        self._lock = asyncio.Lock()

    async def memory_picture(self) -> MemoryPicture:
        await self.sampler.read_hardware()
        info, system = self.ctx.engine.info(), self.sampler.system
        return MemoryPicture(
            device=str(info["device"]) if info.get("device") else None,
            worker_rss=_int_or_none(info.get("worker_rss_bytes")),
            worker_gpu_reserved=_int_or_none(info.get("cuda_reserved_bytes")),
            gpu_free=_gpu_free(self.sampler),
            host_available=system.memory_available_bytes if system else None)

    async def recycle(self, reason: str) -> tuple[bool | None, str]:
        """(True/False = the recycle worked/failed, None = not attempted) and what happened."""
        if self._lock.locked() or self.ctx.engine.state != "ready":
            return None, f"not recycled: engine {self.ctx.engine.state}, a recycle may be running"
        async with self._lock:
            overlap, why = can_overlap(await self.memory_picture())
            log.warning("engine_recycle", reason=reason, overlap=overlap, overlap_reason=why)
            ok = await self.ctx.engine.recycle(reason, overlap=overlap)
        (log.info if ok else log.error)("engine_recycle_done", ok=ok, reason=reason)
        return ok, f"{'recycled' if ok else 'recycle failed'} ({reason}; overlap {overlap}: {why})"

    async def scheduled(self) -> JobOutcome:
        """The optional daily recycle (jobs.recycle_at, with jitter)."""
        ok, what = await self.recycle("scheduled")
        return JobOutcome(RECYCLE_STATUS[ok], what)


def _int_or_none(value: object) -> int | None:
    return value if isinstance(value, int) else None
