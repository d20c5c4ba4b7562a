"""What every scheduled job gets (JobContext), what it returns (JobOutcome), and small shared helpers.

No globals: the daemon builds one JobContext and hands it to the JobRunner. Blocking work (NVML,
sysfs, file writes, subprocesses) never runs on the event loop: `ctx.hw(call)` runs a backend call
in a worker thread (one at a time: backends are not promised to be thread-safe), and the jobs
use asyncio.to_thread for their file work.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar

from ishowttsd.config import Config
from ishowttsd.configstore import ConfigStore
from ishowttsd.hw.base import GpuBackend
from ishowttsd.metrics import Metrics
from ishowttsd.status import RecentTraffic, StatusSources

T = TypeVar("T")
OutcomeStatus = Literal["ok", "flagged", "skipped"]
# bench_fn(nfe_list, runs) -> {"results": [...]}, quality_fn() -> {"comparisons": [...]}
BenchFn = Callable[[list[int], int], Awaitable[dict[str, Any]]]
QualityFn = Callable[[], Awaitable[dict[str, Any]]]


class EngineLike(Protocol):
    """What the jobs use of ishowttsd.engine.client.EngineClient."""

    state: str

    def info(self) -> dict[str, object]: ...

    def is_ready(self) -> bool: ...

    async def recycle(self, reason: str, overlap: bool = True) -> bool:
        """Every worker, one after another (EngineClient also takes worker=INDEX: that slot only)."""
        ...


def engine_workers(info: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The per-worker entries of engine info ("workers"); the top level stands for worker 0 without them."""
    workers = info.get("workers")
    if isinstance(workers, list) and workers:
        return [worker for worker in workers if isinstance(worker, Mapping)]
    return [{**info, "index": 0}]


@dataclass(frozen=True)
class JobOutcome:
    """How one run went. ok: nothing to report; flagged: it ran and found a problem (regression,
    lock lost, could not check); skipped: nothing to do (not configured, disabled, busy)."""

    status: OutcomeStatus
    summary: str
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class JobContext:
    """Everything the jobs read and act on; `get_config` is called per run so reloads apply."""

    get_config: Callable[[], Config]
    engine: EngineLike
    metrics: Metrics
    backend: GpuBackend
    config_store: ConfigStore | None
    status_sources: StatusSources
    traffic: RecentTraffic
    state_dir: Path
    log_dir: Path
    clock: Callable[[], float] = time.time
    bench_fn: BenchFn | None = None
    quality_fn: QualityFn | None = None
    # Told of every OSError a job or the job records hit (path, error); the daemon's DiskState
    # turns ENOSPC/EDQUOT/EROFS into "disk full: DIR" in STATUS= and /v1/status.
    storage_error: Callable[[Path, OSError], object] = lambda path, exc: None
    hw_lock: threading.Lock = field(default_factory=threading.Lock, compare=False, repr=False)

    async def hw(self, call: Callable[[], T]) -> T:
        """Run a blocking backend call in a worker thread, never two at once."""
        return await asyncio.to_thread(self._serialised, call)

    def _serialised(self, call: Callable[[], T]) -> T:
        with self.hw_lock:
            return call()


def set_degraded(sources: StatusSources, key: str, problem: str | None) -> None:
    """Replace this job's entry ("key: problem") in the STATUS= degraded list; None clears it."""
    prefix = f"{key}: "
    sources.degraded[:] = [entry for entry in sources.degraded if not entry.startswith(prefix)]
    if problem:
        sources.degraded.append(prefix + problem)
