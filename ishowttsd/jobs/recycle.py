"""Engine recycles asked for by jobs (leak R25, health R22, the optional daily recycle with jitter).

A recycle starts a new worker, warms it, switches and drains the old one (EngineClient.recycle).
Two workers at once need memory for two: `can_overlap` decides from the latest readings, and when
they cannot both fit the old worker drains first while the queue is held (overlap=False).
Only one recycle runs at a time; a second request while one runs is skipped, not queued.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import structlog

from ishowttsd.jobs.context import JobContext, JobOutcome, OutcomeStatus, engine_workers
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

    async def memory_picture(self, worker: int | None = None) -> MemoryPicture:
        """Worker `worker`'s footprint (None: worker 0, the top-level figures) and what is free."""
        await self.sampler.read_hardware()
        info, system = self._worker_info(worker), self.sampler.system
        return MemoryPicture(
            device=str(info["device"]) if info.get("device") else None,
            worker_rss=_int_or_none(info.get("worker_rss_bytes")),
            worker_gpu_reserved=_int_or_none(info.get("cuda_reserved_bytes")),
            gpu_free=_gpu_free(self.sampler),
            host_available=system.memory_available_bytes if system else None)

    def _worker_info(self, worker: int | None) -> Mapping[str, Any]:
        info = self.ctx.engine.info()
        if worker is None:
            return info
        return next((w for w in engine_workers(info) if w.get("index") == worker), info)

    async def recycle(self, reason: str, worker: int | None = None) -> tuple[bool | None, str]:
        """(True/False = the recycle worked/failed, None = not attempted) and what happened.

        worker: one worker slot's index (the others keep serving); None = every worker, one at a time.
        """
        if self._lock.locked() or self.ctx.engine.state != "ready":
            return None, f"not recycled: engine {self.ctx.engine.state}, a recycle may be running"
        async with self._lock:
            overlap, why = can_overlap(await self.memory_picture(worker))
            log.warning("engine_recycle", reason=reason, overlap=overlap, overlap_reason=why, worker=worker)
            ok = await self._engine_recycle(reason, overlap, worker)
        (log.info if ok else log.error)("engine_recycle_done", ok=ok, reason=reason, worker=worker)
        which = "" if worker is None else f"worker {worker} "
        return ok, f"{which}{'recycled' if ok else 'recycle failed'} ({reason}; overlap {overlap}: {why})"

    async def _engine_recycle(self, reason: str, overlap: bool, worker: int | None) -> bool:
        if worker is None:
            return await self.ctx.engine.recycle(reason, overlap=overlap)
        return await self.ctx.engine.recycle(reason, overlap=overlap, worker=worker)  # type: ignore[call-arg]

    async def scheduled(self) -> JobOutcome:
        """The optional daily recycle (jobs.recycle_at, with jitter)."""
        ok, what = await self.recycle("scheduled")
        return JobOutcome(RECYCLE_STATUS[ok], what)


def _int_or_none(value: object) -> int | None:
    return value if isinstance(value, int) else None
