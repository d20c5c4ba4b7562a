"""Fakes shared by the job tests (imported as `test_jobs_support`), and tests that they are faithful.

FakeBackend implements the GpuBackend protocol with NVML-shaped clock details; whether lock_clocks
works or is refused with "permission denied" is a flag. FakeEngine has EngineClient's info() keys.
Everything else the jobs touch is real: Metrics, StatusSources, RecentTraffic, ConfigStore, files.
"""

from __future__ import annotations

import asyncio
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ishowttsd.config import Config, GpuConfig, JobsConfig
from ishowttsd.configstore import ConfigStore
from ishowttsd.hw.base import ClockResult, ClockState, GpuBackend, GpuSample, SystemSample
from ishowttsd.hw.null import NullBackend
from ishowttsd.jobs.context import BenchFn, JobContext, QualityFn
from ishowttsd.metrics import Metrics
from ishowttsd.status import RecentTraffic, StatusSources

REPO = Path(__file__).resolve().parents[3]
DEFAULTS_TOML = REPO / "config" / "ishowttsd.toml"
GIB = 1024**3
TARGET_MHZ = 1980


def gpu_sample(device: str = "gpu0", **values: Any) -> GpuSample:
    fields = {"utilization_percent": 61.0, "memory_used_bytes": 6 * GIB, "memory_total_bytes": 80 * GIB,
              "temperatures": {"gpu": 61.0, "memory": 55.0}, "throttle_reasons": []}
    return GpuSample(device=device, **{**fields, **values})


def system_sample(**values: Any) -> SystemSample:
    fields = {"cpu_percent": 12.0, "memory_used_bytes": 8 * GIB, "memory_total_bytes": 64 * GIB,
              "memory_available_bytes": 56 * GIB}
    return SystemSample(**{**fields, **values})


class FakeBackend:
    """A GPU backend whose clock lock can be lost (tests set `locked`) and re-applied when privileged."""

    name = "fake"

    def __init__(self, *, locked: bool | None = False, privileged: bool = True,
                 gpus: list[GpuSample] | None = None, system: SystemSample | None = None) -> None:
        self.locked, self.privileged = locked, privileged
        self.gpus = gpus if gpus is not None else [gpu_sample()]
        self.system = system or system_sample()
        self.calls: list[str] = []

    def devices(self) -> list[str]:
        return [gpu.device for gpu in self.gpus]

    def sample(self) -> list[GpuSample]:
        self.calls.append("sample")
        return list(self.gpus)

    def system_sample(self) -> SystemSample:
        self.calls.append("system_sample")
        return self.system

    def lock_clocks(self) -> ClockResult:
        self.calls.append("lock")
        if not self.privileged:
            return ClockResult(ok=False, message="gpu0: Insufficient Permissions", permission_denied=True)
        self.locked = True
        return ClockResult(ok=True, applied={"gpu0": {"sm_clock_mhz": TARGET_MHZ}}, message="locked")

    def verify_clocks(self) -> ClockState:
        self.calls.append("verify")
        current = TARGET_MHZ if self.locked else 1410
        details = {device: {"target_mhz": TARGET_MHZ, "sm_clock_mhz": current} for device in self.devices()}
        return ClockState(locked=self.locked, details=details, reason=f"SM clock {current} MHz")

    def restore_clocks(self) -> ClockResult:
        self.calls.append("restore")
        self.locked = False
        return ClockResult(ok=True, message="locked clocks reset")

    def persistence_mode(self) -> bool | None:
        return True

    def close(self) -> None:
        self.calls.append("close")


@dataclass
class FakeEngine:
    """EngineClient's info()/state/recycle surface; a recycle starts a "new worker" (pid + 1)."""

    state: str = "ready"
    pid: int = 4242
    device: str = "cpu"
    rss: int | None = 700 * 1024**2
    reserved: int | None = 0
    compiled: bool | None = False
    compile_error: str = ""
    recycle_ok: bool = True
    recycles: list[tuple[str, bool]] = field(default_factory=list)
    gate: asyncio.Event | None = None  # when set, recycle() waits for it

    def info(self) -> dict[str, object]:
        return {"state": self.state, "pid": self.pid, "device": self.device, "compiled": self.compiled,
                "compile_error": self.compile_error, "worker_rss_bytes": self.rss,
                "cuda_allocated_bytes": self.reserved, "cuda_reserved_bytes": self.reserved}

    def is_ready(self) -> bool:
        return self.state in ("ready", "recycling")

    async def recycle(self, reason: str, overlap: bool = True) -> bool:
        self.recycles.append((reason, overlap))
        if self.gate is not None:
            await self.gate.wait()
        if self.recycle_ok:
            self.pid += 1
        return self.recycle_ok


class ConfigHolder:
    """The daemon's current config; tests replace sections to simulate a reload."""

    def __init__(self, jobs: dict[str, Any] | None = None, gpu: dict[str, Any] | None = None) -> None:
        self.config = Config(jobs=JobsConfig(**(jobs or {})), gpu=GpuConfig(**(gpu or {})))

    def get(self) -> Config:
        return self.config

    def update_jobs(self, **keys: Any) -> None:
        self.config = dataclasses.replace(self.config, jobs=dataclasses.replace(self.config.jobs, **keys))


def config_store(tmp_path: Path, text: str = "[engine]\nnfe = 8\n", keep: int = 30) -> ConfigStore:
    config = tmp_path / "etc" / "ishowttsd.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(text)
    return ConfigStore(config, tmp_path / "state" / "config-backups", DEFAULTS_TOML, keep=keep)


@dataclass
class Rig:
    """A JobContext over fakes and real parts, with handles on them."""

    ctx: JobContext
    holder: ConfigHolder
    backend: Any
    engine: FakeEngine
    metrics: Metrics
    sources: StatusSources
    now: list[float]

    def value(self, name: str, **labels: str) -> float | None:
        return self.metrics.registry.get_sample_value(name, labels)


def make_rig(tmp_path: Path, *, backend: Any = None, engine: FakeEngine | None = None,
             store: ConfigStore | None = None, jobs: dict[str, Any] | None = None,
             gpu: dict[str, Any] | None = None, bench_fn: BenchFn | None = None,
             quality_fn: QualityFn | None = None, now: float = 1_790_000_000.0) -> Rig:
    holder, metrics, sources = ConfigHolder(jobs, gpu), Metrics(), StatusSources()
    backend = backend if backend is not None else FakeBackend()
    engine = engine or FakeEngine()
    clock = [now]
    ctx = JobContext(get_config=holder.get, engine=engine, metrics=metrics, backend=backend,
                     config_store=store, status_sources=sources, traffic=RecentTraffic(),
                     state_dir=tmp_path / "state", log_dir=tmp_path / "log", clock=lambda: clock[0],
                     bench_fn=bench_fn, quality_fn=quality_fn)
    ctx.log_dir.mkdir(parents=True, exist_ok=True)
    return Rig(ctx, holder, backend, engine, metrics, sources, clock)


# --- the fakes are faithful ----------------------------------------------------------------------
def test_fake_backend_and_null_backend_implement_the_gpu_backend_protocol() -> None:
    assert isinstance(FakeBackend(), GpuBackend)
    assert isinstance(NullBackend(), GpuBackend)


def test_fake_backend_locks_only_when_privileged() -> None:
    refused, allowed = FakeBackend(privileged=False), FakeBackend(privileged=True)
    assert refused.lock_clocks().permission_denied and refused.verify_clocks().locked is False
    assert allowed.lock_clocks().ok and allowed.verify_clocks().locked is True


def test_fake_engine_info_has_the_engine_client_keys() -> None:
    expected = {"state", "pid", "device", "compiled", "compile_error", "worker_rss_bytes",
                "cuda_allocated_bytes", "cuda_reserved_bytes"}
    assert expected <= set(FakeEngine().info())


def test_rig_context_uses_the_given_clock_and_dirs(tmp_path: Path) -> None:
    rig = make_rig(tmp_path, now=123.0)
    assert rig.ctx.clock() == 123.0 and rig.ctx.log_dir.is_dir()
    rig.holder.update_jobs(health_at="07:15")
    assert rig.ctx.get_config().jobs.health_at == "07:15"
