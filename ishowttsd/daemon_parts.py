"""Builders and small helpers the daemon wires together (kept out of daemon.py to keep it short)."""

from __future__ import annotations

import asyncio
import contextlib
import grp
import os
import stat
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any

import structlog
from aiohttp import web

from ishowttsd.config import Config, DaemonConfig
from ishowttsd.configstore import ConfigStore
from ishowttsd.decide.dispatch import ALL_DEVICES, resolve_devices, visible_gpu_count
from ishowttsd.diskstate import DiskState, guarded_writer
from ishowttsd.engine.client import EngineClient, EngineEvents, EngineLimits, SynthesisRequest
from ishowttsd.engine.spec import spec_from_config
from ishowttsd.fsutil import atomic_write_bytes
from ishowttsd.hw.detect import load_pynvml
from ishowttsd.metrics import Metrics
from ishowttsd.status import RecentTraffic
from ishowttsd.supervisor import Supervisor, SupervisorSettings
from ishowttsd.systemd import Notifier
from ishowttsd.voices import VoiceStore, find_default_reference

log = structlog.get_logger("ishowttsd")
DEFAULT_TRANSCRIPT = "Some call me nature, others call me mother nature."
CANARY_TEXT = "Canary check."
EXTEND_EVERY_S = 10.0


class BootProgress:
    """STATUS= at each boot stage; EXTEND_TIMEOUT_USEC while something slow (load, warm-up) runs."""

    def __init__(self, notifier: Notifier, budget_s: float) -> None:
        self.notifier, self.budget_s = notifier, budget_s

    def stage(self, text: str) -> None:
        self.notifier.status(text)
        log.info("boot_stage", stage=text)

    @contextlib.asynccontextmanager
    async def extending(self) -> AsyncIterator[None]:
        task = asyncio.create_task(self._extend())
        try:
            yield
        finally:
            task.cancel()

    async def _extend(self) -> None:
        while True:
            self.notifier.extend_timeout(3 * EXTEND_EVERY_S)
            await asyncio.sleep(EXTEND_EVERY_S)


DEFAULTS_PATH = Path(__file__).parent / "data" / "ishowttsd.toml"


def build_config_store(config: Config, config_path: Path | None) -> ConfigStore | None:
    if config_path is None:
        return None
    backups = Path(config.daemon.state_dir) / "config-backups"
    return ConfigStore(config_path, backups, DEFAULTS_PATH, keep=config.jobs.backup_keep)


def build_voices(config: Config, disk: DiskState) -> VoiceStore:
    root = Path(config.daemon.state_dir) / "voices"
    root.mkdir(parents=True, exist_ok=True)
    return VoiceStore(root, find_default_reference(), DEFAULT_TRANSCRIPT, config.limits,
                      write_file=guarded_writer(disk, atomic_write_bytes))


def engine_limits(config: Config) -> EngineLimits:
    e, lim = config.engine, config.limits
    return EngineLimits(max_queue=lim.max_queue, retry_after_s=lim.retry_after_s, boot_timeout_s=e.boot_timeout_s,
                        ping_interval_s=e.ping_interval_s, heartbeat_timeout_s=e.heartbeat_timeout_s,
                        max_restarts=e.max_restarts, restart_window_s=e.restart_window_s, standby=e.standby,
                        boot_yield_max_pause_s=e.boot_yield_max_pause_s)


def engine_events(metrics: Metrics, traffic: RecentTraffic) -> EngineEvents:
    def state_changed(state: str, detail: str) -> None:
        metrics.set_engine_state(state)
        log.info("engine_state", state=state, detail=detail)

    def worker_ready(compiled: bool, compile_error: str) -> None:
        metrics.observe_worker_ready(compiled, compile_error)
        if compile_error:  # at boot, after a recycle or a restart alike (R6: grep the journal for it)
            log.error("engine_compile_fallback", compile_error=compile_error)

    def standby_state(worker: int, device: str, state: str) -> None:
        metrics.set_standby_state(worker, device, state)
        log.info("engine_standby", worker=worker, device=device, state=state)

    return EngineEvents(
        job_finished=lambda audio_s, synth_s, ttfa_s, wait_s: (traffic.record(audio_s, synth_s),
                                                              metrics.observe_engine_job(audio_s, synth_s, wait_s)),
        restarted=metrics.observe_engine_restart, state_changed=state_changed,
        worker_restarted=metrics.observe_worker_restart, worker_state=metrics.set_worker_state,
        worker_ready=worker_ready, batch_size=metrics.observe_batch_size, standby_state=standby_state)


def nvml_gpu_count(nvml_loader: Callable[[], Any] = load_pynvml) -> int:
    """GPUs NVML sees (0 without a driver); never imports torch."""
    try:
        nvml = nvml_loader()
        nvml.nvmlInit()
    except Exception:
        return 0
    try:
        return int(nvml.nvmlDeviceGetCount())
    finally:
        nvml.nvmlShutdown()


def engine_devices(config: Config, environ: Mapping[str, str],
                   nvml_loader: Callable[[], Any] = load_pynvml) -> tuple[str, ...]:
    """[engine] devices → one device per worker; "all" counts GPUs through NVML and CUDA_VISIBLE_DEVICES."""
    setting = config.engine.devices
    count = visible_gpu_count(environ.get("CUDA_VISIBLE_DEVICES"), nvml_gpu_count(nvml_loader)) \
        if setting == ALL_DEVICES else 0
    return resolve_devices(setting, config.engine.device, count)


def build_engine(config: Config, voices: VoiceStore, metrics: Metrics, traffic: RecentTraffic) -> EngineClient:
    spec = spec_from_config(config, warmup_voice=voices.get(config.voices.default_voice))
    devices = engine_devices(config, os.environ)
    log.info("engine_devices", devices=list(devices))
    return EngineClient(spec, engine_limits(config), engine_events(metrics, traffic),
                        devices=devices if config.engine.devices else ())  # (): follows engine.device


def canary_request(get_config: Callable[[], Config], voices: VoiceStore) -> Callable[[], SynthesisRequest]:
    """The canary's request, from the config in force (a reload changes its voice and NFE)."""
    def request() -> SynthesisRequest:
        config = get_config()
        voice = voices.get(config.voices.default_voice)
        return SynthesisRequest(CANARY_TEXT, voice, config.engine.nfe, 1.0, seed=1, deadline_s=120.0)

    return request


def supervisor_settings(config: Config) -> SupervisorSettings:
    w = config.watchdog
    # The engine client kills a silent worker after heartbeat_timeout_s; the supervisor is the backstop.
    return SupervisorSettings(worker_max_age_s=2 * config.engine.heartbeat_timeout_s,
                              canary_interval_s=w.canary_interval_s, canary_max_age_s=w.canary_max_age_s,
                              boot_grace_s=config.engine.boot_timeout_s,
                              max_failed_recoveries=w.max_failed_recoveries)


def build_supervisor(get_config: Callable[[], Config], engine: EngineClient, notifier: Notifier,
                     voices: VoiceStore, status_line: Callable[[], str]) -> Supervisor:
    return Supervisor(engine, notifier, supervisor_settings(get_config()), canary_request(get_config, voices),
                      status_line)


async def open_unix_site(runner: web.AppRunner, daemon: DaemonConfig) -> web.UnixSite:
    path = Path(daemon.socket)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_socket(path)
    site = web.UnixSite(runner, str(path))
    await site.start()
    os.chmod(path, daemon.socket_mode)
    if daemon.socket_group:
        os.chown(path, -1, grp.getgrnam(daemon.socket_group).gr_gid)
    return site


def remove_socket(path: str | Path) -> None:
    """Remove a socket file left behind (never a regular file someone pointed us at)."""
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISSOCK(os.lstat(path).st_mode):
            os.unlink(path)
