"""Building the JobRunner from the daemon's parts (so daemon.py needs one call, not a page).

The GPU backend comes from [gpu] (auto/nvml/jetson/none). A backend the config names explicitly
but that cannot run here (no driver, no devfreq node) does not stop the daemon: it runs with the
no-GPU backend, logs `gpu_backend_unavailable` and shows it in STATUS= as degraded.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog

from ishowttsd.config import Config
from ishowttsd.configstore import ConfigStore
from ishowttsd.hw.base import GpuBackend, HardwareUnavailable
from ishowttsd.hw.detect import backend_for_config
from ishowttsd.hw.injected import FaultInjectingBackend
from ishowttsd.hw.null import NullBackend
from ishowttsd.jobs.context import BenchFn, EngineLike, JobContext, QualityFn, set_degraded
from ishowttsd.jobs.scheduler import JobRunner
from ishowttsd.metrics import Metrics
from ishowttsd.status import RecentTraffic, StatusSources

log = structlog.get_logger(__name__)


def open_backend(config: Config, sources: StatusSources,
                 build: Callable[[Config], GpuBackend] = backend_for_config) -> GpuBackend:
    """The configured GPU backend, or the no-GPU one (logged, degraded) when it cannot run here."""
    try:
        backend = build(config)
    except HardwareUnavailable as exc:
        log.error("gpu_backend_unavailable", configured=config.gpu.backend, reason=str(exc))
        set_degraded(sources, "gpu", f"backend {config.gpu.backend!r} unavailable: {exc}")
        return NullBackend()
    log.info("gpu_backend", backend=backend.name, devices=backend.devices())
    return backend


def build_job_runner(*, get_config: Callable[[], Config], engine: EngineLike, metrics: Metrics,
                     config_store: ConfigStore | None, status_sources: StatusSources, traffic: RecentTraffic,
                     bench_fn: BenchFn | None = None, quality_fn: QualityFn | None = None,
                     storage_error: Callable[[Path, OSError], object] = lambda path, exc: None,
                     **runner_options: Any) -> JobRunner:
    """A JobRunner over the daemon's engine, metrics, config store and status sources."""
    config = get_config()
    backend = open_backend(config, status_sources)
    if config.daemon.fault_injection:
        backend = FaultInjectingBackend(backend)  # test-only: POST /v1/admin/fault {"kind": "nvml_error"}
    ctx = JobContext(get_config=get_config, engine=engine, metrics=metrics,
                     backend=backend, config_store=config_store,
                     status_sources=status_sources, traffic=traffic, state_dir=config.daemon.state_dir,
                     log_dir=config.daemon.log_dir, bench_fn=bench_fn, quality_fn=quality_fn,
                     storage_error=storage_error)
    return JobRunner(ctx, **runner_options)
