"""build_job_runner: the daemon's one call; an unavailable configured backend degrades, never crashes."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from test_jobs_support import FakeBackend, FakeEngine

from ishowttsd.config import Config, DaemonConfig, GpuConfig
from ishowttsd.hw.base import HardwareUnavailable
from ishowttsd.hw.null import NullBackend
from ishowttsd.jobs.wiring import build_job_runner, open_backend
from ishowttsd.metrics import Metrics
from ishowttsd.status import RecentTraffic, StatusSources


def test_explicit_backend_that_cannot_run_falls_back_to_none_and_says_so() -> None:
    def no_driver(config: Config) -> FakeBackend:
        raise HardwareUnavailable("nvml: NVML unavailable: Driver Not Loaded")

    sources = StatusSources()
    backend = open_backend(Config(gpu=GpuConfig(backend="nvml")), sources, build=no_driver)
    assert isinstance(backend, NullBackend)
    assert sources.degraded == ["gpu: backend 'nvml' unavailable: nvml: NVML unavailable: Driver Not Loaded"]


async def test_build_job_runner_wires_dirs_status_and_closes_the_backend(tmp_path: Path) -> None:
    config = Config(daemon=DaemonConfig(state_dir=tmp_path / "state", log_dir=tmp_path / "log"),
                    gpu=GpuConfig(backend="none"))
    sources = StatusSources()
    runner = build_job_runner(get_config=lambda: config, engine=FakeEngine(), metrics=Metrics(),
                              config_store=None, status_sources=sources, traffic=RecentTraffic())
    assert runner.ctx.backend.name == "none" and runner.ctx.log_dir == tmp_path / "log"
    assert sources.next_job == runner.next_job
    assert (await runner.run_now("sampler"))["last_status"] == "ok"
    assert (tmp_path / "log" / "memory_history.jsonl").is_file()
    closed: list[str] = []
    runner.ctx.backend.close = lambda: closed.append("closed")  # type: ignore[method-assign]
    runner.close()
    assert closed == ["closed"] and dataclasses.is_dataclass(runner.ctx)
