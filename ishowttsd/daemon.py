"""The ishowttsd daemon: config → socket → engine worker → READY; signals → reload / drain and stop.

The main process never imports torch: it owns the socket, the queue, the metrics and the
schedule; the engine lives in a spawned worker (ishowttsd.engine.worker).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

import structlog
from aiohttp import web

from ishowttsd import __version__
from ishowttsd.api.app import AppDeps, create_app
from ishowttsd.api.routes_engine import engine_routes
from ishowttsd.api.routes_jobs import jobs_routes
from ishowttsd.bench.quality import make_quality_fn
from ishowttsd.bench.runner import make_bench_fn
from ishowttsd.config import DEFAULT_CONFIG_PATH, Config, ConfigError, apply_overrides, load_config
from ishowttsd.daemon_parts import (
    BootProgress,
    build_config_store,
    build_engine,
    build_supervisor,
    build_voices,
    open_unix_site,
    remove_socket,
)
from ishowttsd.diskstate import DiskState
from ishowttsd.faults import fault_routes
from ishowttsd.jobs.wiring import build_job_runner
from ishowttsd.logging_setup import configure_logging
from ishowttsd.metrics import Metrics
from ishowttsd.reload import Reloader
from ishowttsd.status import RecentTraffic, StatusSources, status_line
from ishowttsd.systemd import Notifier
from ishowttsd.tcp import TcpConfigError, TcpListener, open_tcp_site, prepare_tcp

log = structlog.get_logger("ishowttsd")
EXIT_CONFIG = 2
EXIT_ENGINE_BOOT = 3


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="ishowttsd", description="F5-TTS as a self-maintaining service.")
    parser.add_argument("--config", type=Path, default=None,
                        help=f"config file (default {DEFAULT_CONFIG_PATH} if it exists, else built-in defaults)")
    parser.add_argument("--socket", help="Unix socket path (overrides [daemon].socket)")
    parser.add_argument("--state-dir", help="state directory (overrides [daemon].state_dir)")
    parser.add_argument("--model", help='"tiny", "F5TTS_v1_Base" or a checkpoint path (overrides [engine].model)')
    parser.add_argument("--version", action="version", version=f"ishowttsd {__version__}")
    return parser.parse_args(argv)


def config_path_of(args: argparse.Namespace) -> Path | None:
    if args.config is not None:
        return args.config
    return DEFAULT_CONFIG_PATH if DEFAULT_CONFIG_PATH.exists() else None


def load_effective_config(path: Path | None, args: argparse.Namespace) -> Config:
    return apply_overrides(load_config(path), socket=args.socket, state_dir=args.state_dir, model=args.model)


class Daemon:
    def __init__(self, config: Config, config_path: Path | None, reload_config: Callable[[], Config]) -> None:
        self.config, self.config_path = config, config_path
        self.notifier = Notifier()
        self.metrics = Metrics()
        self.traffic, self.sources = RecentTraffic(), StatusSources()
        self.boot = BootProgress(self.notifier, config.engine.boot_timeout_s)
        self.disk = DiskState([config.daemon.state_dir, config.daemon.log_dir])
        self.sources.storage = self.disk.problems
        self.voices = build_voices(config, self.disk)
        self.engine = build_engine(config, self.voices, self.metrics, self.traffic)
        self.supervisor = build_supervisor(lambda: self.config, self.engine, self.notifier, self.voices,
                                           self.status_line)
        self.reloader = Reloader(self, reload_config, build_config_store(config, config_path))
        self.reloader.remember_running("boot")  # the file as just loaded is the first rollback target
        self.jobs = build_job_runner(get_config=lambda: self.config, engine=self.engine, metrics=self.metrics,
                                     config_store=self.reloader.store, status_sources=self.sources,
                                     traffic=self.traffic, bench_fn=make_bench_fn(str(config.daemon.socket)),
                                     quality_fn=self._quality_fn(), storage_error=self.disk.record)
        self.signals: asyncio.Queue[signal.Signals] = asyncio.Queue()
        self.stop_requested = asyncio.Event()
        self.started_at = time.monotonic()
        self.exit_code = 0
        self.tcp: TcpListener | None = None

    def _quality_fn(self) -> Callable[[], Awaitable[dict[str, Any]]]:
        """The monthly quality job (R21, R23): NFE 8 vs 32 and the served path vs eager fp32, same seed."""
        return make_quality_fn(str(self.config.daemon.socket), spec_fn=lambda: self.engine.spec,
                               voice_fn=lambda: self.voices.get(self.config.voices.default_voice),
                               nfe_fn=lambda: self.config.engine.nfe)

    def status_line(self) -> str:
        return status_line(self.engine, self.supervisor, self.traffic, self.sources)

    def status_extra(self) -> dict[str, object]:
        return {"watchdog": self.supervisor.snapshot(), "reload": self.reloader.snapshot(),
                "jobs": self.jobs.status_summary(), "storage": self.disk.snapshot(),
                "degraded": self.sources.problems()}

    async def reload(self) -> bool:
        ok = await self.reloader.reload()
        self.jobs.apply_config()
        return ok

    def app_deps(self) -> AppDeps:
        return AppDeps(get_config=lambda: self.config, config_path=self.config_path, engine=self.engine,
                       voices=self.voices, metrics=self.metrics, started_at=self.started_at,
                       status_extra=self.status_extra)

    def build_app(self, token: str | None = None) -> web.Application:
        """The API app; with `token` (the loopback TCP listener's app) every request needs that bearer token."""
        app = create_app(self.app_deps(), require_token=token)
        app.add_routes(jobs_routes(self.jobs, self.reload))
        app.add_routes(engine_routes(self.engine, lambda: Path(self.config.daemon.state_dir)))
        if self.config.daemon.fault_injection:
            app.add_routes(fault_routes(self))
        return app

    async def run(self) -> int:
        self._install_signal_handlers()
        runner = web.AppRunner(self.build_app(), handle_signals=False, access_log=None)
        await runner.setup()
        self.boot.stage("opening socket")
        await open_unix_site(runner, self.config.daemon)
        self.tcp = await open_tcp_site(self.build_app, self.config.daemon)
        tasks = [asyncio.create_task(self.supervisor.run_loop_tasks(), name="supervisor")]
        try:
            if await self._first(self._boot_engine(), self.stop_requested.wait()):
                await self._serve()
        finally:
            await self._shutdown(runner, tasks)
        return self.exit_code

    def _install_signal_handlers(self) -> None:
        """Handlers only enqueue; _serve dispatches. SIGTERM during boot aborts the boot cleanly."""
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.add_signal_handler(signum, self._on_signal, signum)

    def _on_signal(self, signum: signal.Signals) -> None:
        if signum != signal.SIGHUP:
            self.stop_requested.set()
        self.signals.put_nowait(signum)

    @staticmethod
    async def _first(boot: Coroutine[object, object, bool], stop: Coroutine[object, object, object]) -> bool:
        """Run boot unless a stop signal comes first; True when booted and not asked to stop."""
        boot_task, stop_task = asyncio.ensure_future(boot), asyncio.ensure_future(stop)
        await asyncio.wait({boot_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
        for task in (boot_task, stop_task):
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(boot_task, stop_task, return_exceptions=True)
        return boot_task.done() and not boot_task.cancelled() and boot_task.result() is True

    async def _boot_engine(self) -> bool:
        await self.jobs.lock_clocks_at_start()
        self.boot.stage("loading engine")
        async with self.boot.extending():
            await self.engine.start()
        if self.engine.state == "failed":
            self.notifier.status(f"failed: {self.engine.detail}")
            log.error("engine_boot_failed", reason=self.engine.detail)
            self.exit_code = EXIT_ENGINE_BOOT
            return False
        await self.supervisor.run_canary()
        self.jobs.start()
        self.notifier.ready(self.status_line())
        log.info("ready", socket=str(self.config.daemon.socket), **self.engine.info())
        return True

    async def _serve(self) -> None:
        while True:
            signum = await self.signals.get()
            if signum == signal.SIGHUP:
                await self.reload()
            else:
                log.info("stopping", signal=signum.name)
                return

    async def _shutdown(self, runner: web.AppRunner, tasks: list[asyncio.Task[None]]) -> None:
        self.notifier.stopping("draining")
        self.jobs.shutdown()
        drain = self.config.daemon.drain_timeout_s
        for site in list(runner.sites):
            await site.stop()
        if self.tcp is not None:
            await self.tcp.stop()
        await self.engine.stop(drain)
        await self.jobs.restore_clocks_at_stop()
        self.jobs.close()
        for task in tasks:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*tasks, return_exceptions=True)
        await runner.cleanup()
        if self.tcp is not None:
            await self.tcp.close()
        remove_socket(self.config.daemon.socket)
        log.info("stopped", exit_code=self.exit_code)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    path = config_path_of(args)
    try:
        config = load_effective_config(path, args)
        prepare_tcp(config.daemon)  # a bad address or token file fails the start with exit 2
    except (ConfigError, TcpConfigError) as exc:
        print(f"ishowttsd: invalid configuration:\n{exc}", file=sys.stderr)
        return EXIT_CONFIG
    configure_logging(config.logging.format, config.logging.level)
    log.info("starting", version=__version__, config=str(path) if path else "(defaults)", model=config.engine.model)
    daemon = Daemon(config, path, lambda: load_effective_config(path, args))
    return asyncio.run(daemon.run())
