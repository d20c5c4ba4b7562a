"""Sampler (R2, R7, R19): GPU + system + engine-worker memory → gauges and a bounded memory history.

Every run appends one whole JSON line to log_dir/memory_history.jsonl (fsutil.append_jsonl_line);
logrotate rotates and bounds the file, and the leak detector reads its newest jobs.memory_history_max
samples. An operator can read it too.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import structlog

from ishowttsd.fsutil import append_jsonl_line
from ishowttsd.hw.base import GpuSample, SystemSample
from ishowttsd.jobs.context import JobContext, JobOutcome, engine_workers, set_degraded

log = structlog.get_logger(__name__)
MEMORY_HISTORY = "memory_history.jsonl"
GIB = 1024**3
# ishowttsd_worker_memory_bytes{kind} ← engine info key of each worker
WORKER_MEMORY_KEYS = {"rss": "worker_rss_bytes", "cuda_allocated": "cuda_allocated_bytes",
                      "cuda_reserved": "cuda_reserved_bytes"}


def _total(values: Sequence[int | None]) -> int | None:
    known = [value for value in values if value is not None]
    return sum(known) if known else None


def memory_record(now_s: float, gpus: Sequence[GpuSample], system: SystemSample,
                  info: Mapping[str, Any]) -> dict[str, Any]:
    """One memory history line (decide.leak.MemorySample reads timestamp_s, rss_bytes, gpu_*)."""
    return {
        "timestamp_s": round(now_s, 3),
        "worker_pid": info.get("pid"),
        "engine_state": info.get("state"),
        "rss_bytes": info.get("worker_rss_bytes"),
        "gpu_allocated_bytes": info.get("cuda_allocated_bytes") or 0,
        "gpu_reserved_bytes": info.get("cuda_reserved_bytes") or 0,
        "gpu_memory_used_bytes": _total([gpu.memory_used_bytes for gpu in gpus]),
        "gpu_memory_total_bytes": _total([gpu.memory_total_bytes for gpu in gpus]),
        "system_memory_used_bytes": system.memory_used_bytes,
        "system_memory_available_bytes": system.memory_available_bytes,
    }


def max_temperature(gpus: Sequence[GpuSample]) -> float | None:
    temps = [value for gpu in gpus for value in gpu.temperatures.values()]
    return max(temps) if temps else None


def summary_line(record: Mapping[str, Any], temp_c: float | None) -> str:
    parts = [f"{name} {record[key] / GIB:.2f} GiB" for name, key in
             (("worker rss", "rss_bytes"), ("gpu used", "gpu_memory_used_bytes"),
              ("host used", "system_memory_used_bytes")) if record.get(key) is not None]
    if temp_c is not None:
        parts.append(f"gpu {temp_c:.0f}°C")
    return ", ".join(parts) or "no readings"


DEGRADED_KEY = "gpu readings"


def unreadable_gpus(gpus: Sequence[GpuSample]) -> str | None:
    """"DEVICE: reason" for GPUs of which nothing could be read (a partial read is normal on some boards)."""
    dead = [gpu for gpu in gpus if gpu.utilization_percent is None and gpu.memory_used_bytes is None
            and not gpu.temperatures and gpu.missing]
    return "; ".join(f"{gpu.device}: {next(iter(gpu.missing.values()))}" for gpu in dead) or None


class Sampler:
    """The sampler job; also the latest readings for the health job and the STATUS= line."""

    def __init__(self, ctx: JobContext) -> None:
        self.ctx = ctx
        self.gpus: list[GpuSample] = []
        self.system: SystemSample | None = None
        self._throttle_seen: dict[str, set[str]] = {}

    @property
    def history_path(self) -> Path:
        return self.ctx.log_dir / MEMORY_HISTORY

    def max_temp_c(self) -> float | None:
        """For STATUS=: the hottest sensor of the last sample."""
        return max_temperature(self.gpus)

    async def read_hardware(self) -> tuple[list[GpuSample], SystemSample]:
        backend = self.ctx.backend
        self.gpus, self.system = await self.ctx.hw(lambda: (backend.sample(), backend.system_sample()))
        return self.gpus, self.system

    async def run(self) -> JobOutcome:
        gpus, system = await self.read_hardware()
        info = self.ctx.engine.info()
        self._publish_gpus(gpus)
        self._publish_worker(info)
        records = self._worker_records(gpus, system, info)
        for record in records:
            await asyncio.to_thread(append_jsonl_line, self.history_path, record)
        record = records[0]
        missing = {gpu.device: gpu.missing for gpu in gpus if gpu.partial}
        set_degraded(self.ctx.status_sources, DEGRADED_KEY, unreadable_gpus(gpus))
        if system.partial:
            missing["system"] = system.missing
        return JobOutcome("ok", summary_line(record, self.max_temp_c()), {**record, "missing": missing})

    def _publish_gpus(self, gpus: Sequence[GpuSample]) -> None:
        for gpu in gpus:
            self._publish_usage(gpu)
            self.ctx.metrics.set_gpu_temperatures(gpu.device, gpu.temperatures)
            self._publish_throttle(gpu)

    def _publish_usage(self, gpu: GpuSample) -> None:
        """Known values only: a gauge left at its last value beats a made-up 0."""
        metrics = self.ctx.metrics
        if gpu.utilization_percent is not None:
            metrics.gpu_utilization.labels(device=gpu.device).set(gpu.utilization_percent)
        if gpu.memory_used_bytes is not None:
            metrics.gpu_memory_used.labels(device=gpu.device).set(gpu.memory_used_bytes)

    def _publish_throttle(self, gpu: GpuSample) -> None:
        """Active reasons 1; reasons seen before and now gone back to 0."""
        seen = self._throttle_seen.setdefault(gpu.device, set())
        seen.update(gpu.throttle_reasons)
        self.ctx.metrics.set_gpu_throttle_reasons(gpu.device, {r: r in gpu.throttle_reasons for r in seen})

    def _worker_records(self, gpus: Sequence[GpuSample], system: SystemSample,
                        info: Mapping[str, Any]) -> list[dict[str, Any]]:
        """One memory history line per worker slot, tagged with its index and configured device."""
        now = self.ctx.clock()
        return [{**memory_record(now, gpus, system, worker), "worker": worker.get("index", 0),
                 "device": worker.get("configured_device", worker.get("device"))}
                for worker in engine_workers(info)]

    def _publish_worker(self, info: Mapping[str, Any]) -> None:
        """Unlabelled gauges: worker 0 (the top level); labelled ones: every worker slot."""
        rss = info.get("worker_rss_bytes")
        if isinstance(rss, int):
            self.ctx.metrics.set_worker_memory(rss, int(info.get("cuda_allocated_bytes") or 0),
                                               int(info.get("cuda_reserved_bytes") or 0))
        for worker in engine_workers(info):
            known = {kind: worker.get(key) for kind, key in WORKER_MEMORY_KEYS.items()}
            self.ctx.metrics.set_worker_slot_memory(
                int(worker.get("index", 0)), str(worker.get("configured_device", worker.get("device"))),
                {kind: value for kind, value in known.items() if isinstance(value, int)})
