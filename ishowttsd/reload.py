"""SIGHUP reload: validate → back up → apply → health-check → automatic rollback on failure (R26, R32, R33).

systemd 252 has no Type=notify-reload, so the daemon itself sends RELOADING=1 + MONOTONIC_USEC
and READY=1 when done, whichever way the reload went.

Applying a config: `daemon.config` is replaced (whatever is read at use follows at once), the parts
built from it at boot get their new values (engine limits, watchdog settings, voice limits, backup
count), and a changed engine spec recycles the workers. Keys in RESTART_ONLY keep their running
values and are reported in `needs_restart`; the jobs are rescheduled by Daemon.reload afterwards.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import structlog

from ishowttsd.api.app import client_max_size
from ishowttsd.config import Config, ConfigError
from ishowttsd.configstore import ConfigStore
from ishowttsd.daemon_parts import engine_limits, supervisor_settings
from ishowttsd.engine.spec import spec_from_config
from ishowttsd.logging_setup import configure_logging

if TYPE_CHECKING:
    from ishowttsd.daemon import Daemon

log = structlog.get_logger("ishowttsd")
# (section, key): settings only a restart can change: sockets, directories, the set of engine workers,
# the GPU backend (opened once; it holds the clock lock) and fault injection (its routes are added at start).
RESTART_ONLY: tuple[tuple[str, str], ...] = (
    *(("daemon", key) for key in ("socket", "socket_mode", "socket_group", "state_dir", "log_dir", "tcp_listen",
                                  "tcp_token_file", "fault_injection")),
    ("engine", "devices"),
    *(("gpu", key) for key in ("backend", "sysfs_root", "sm_clock_mhz", "nvpmodel_mode", "command_timeout_s",
                               "command_retries")),
)


def restart_only_changes(old: Config, new: Config) -> list[str]:
    """"section.key" for each restart-only setting the new config changes."""
    return [f"{section}.{key}" for section, key in RESTART_ONLY
            if getattr(getattr(old, section), key) != getattr(getattr(new, section), key)]


def keep_restart_only(old: Config, new: Config) -> Config:
    """Keys that only a restart can change keep their running values (and are reported)."""
    sections = {section for section, _ in RESTART_ONLY}
    kept = {section: {key: getattr(getattr(old, section), key) for s, key in RESTART_ONLY if s == section}
            for section in sections}
    return replace(new, **{section: replace(getattr(new, section), **keys) for section, keys in kept.items()})


def cap_body_bytes(new: Config, body_ceiling: int) -> Config:
    """limits.max_body_bytes no higher than the API's client_max_size (raising that takes a restart)."""
    if new.limits.max_body_bytes <= body_ceiling:
        return new
    return replace(new, limits=replace(new.limits, max_body_bytes=body_ceiling))


def reloadable(old: Config, candidate: Config, body_ceiling: int) -> tuple[Config, list[str]]:
    """What a reload applies of `candidate`, and the "section.key"s whose change needs a restart."""
    over = ["limits.max_body_bytes"] if candidate.limits.max_body_bytes > body_ceiling else []
    return cap_body_bytes(keep_restart_only(old, candidate), body_ceiling), restart_only_changes(old, candidate) + over


class Reloader:
    def __init__(self, daemon: Daemon, load: Callable[[], Config], store: ConfigStore | None) -> None:
        self.daemon, self.load, self.store = daemon, load, store
        self.last_good_backup: str | None = None
        self.last: dict[str, Any] = {"result": "none"}
        self.body_ceiling = client_max_size(daemon.config.limits)  # the API apps are built from the boot config

    def snapshot(self) -> dict[str, Any]:
        return dict(self.last)

    def backup_file(self, reason: str) -> str | None:
        """Back up the config file as it is now; call right after reading it, so the copy is what was loaded."""
        if self.store is None or not self.store.config_path.exists():
            return None
        try:
            return self.store.backup(reason).id
        except OSError as exc:  # a full disk must not stop the daemon; the reload goes on without a backup
            log.error("config_backup_failed", reason=reason, error=str(exc))
            return None

    def remember_running(self, reason: str) -> None:
        """Mark the file as just loaded as the rollback target."""
        self.last_good_backup = self.backup_file(reason)

    async def reload(self) -> bool:
        notifier = self.daemon.notifier
        notifier.reloading()
        try:
            ok = await self._reload()
        finally:
            notifier.ready(self.daemon.status_line())
        return ok

    async def _reload(self) -> bool:
        old = self.daemon.config
        try:
            candidate = await asyncio.to_thread(self.load)
        except ConfigError as exc:
            return self._result("rejected", str(exc))
        candidate_backup = await asyncio.to_thread(self.backup_file, "reload")
        new, needs_restart = reloadable(old, candidate, self.body_ceiling)
        if await self._apply(old, new):
            self.last_good_backup = candidate_backup
            return self._result("applied", "", needs_restart=needs_restart)
        await self._roll_back(old)
        return self._result("rolled_back", "the new config failed its health check; previous config restored")

    async def _apply(self, old: Config, new: Config) -> bool:
        self.daemon.config = new
        if new.logging != old.logging:
            configure_logging(new.logging.format, new.logging.level)
        self._apply_built(new)
        new_spec = spec_from_config(new, warmup_voice=self.daemon.engine.spec.warmup_voice)
        if new_spec == self.daemon.engine.spec:
            return True
        self.daemon.engine.spec = new_spec
        return await self.daemon.engine.recycle("config reload") and await self.daemon.supervisor.run_canary()

    def _apply_built(self, new: Config) -> None:
        """Settings the daemon's parts were built with (not re-read at use) get their new values."""
        daemon, limits = self.daemon, engine_limits(new)
        if limits != daemon.engine.limits:
            daemon.engine.set_limits(limits)
        daemon.supervisor.set_settings(supervisor_settings(new))
        daemon.voices.set_limits(new.limits)
        if self.store is not None:
            self.store.keep = new.jobs.backup_keep

    async def _roll_back(self, old: Config) -> None:
        if self.store is not None and self.last_good_backup is not None:
            await asyncio.to_thread(self.store.rollback, self.last_good_backup)
        await self._apply(self.daemon.config, old)

    def _result(self, result: str, error: str, needs_restart: list[str] | None = None) -> bool:
        self.last = {"result": result, "error": error, "at": time.time(), "needs_restart": needs_restart or []}
        log_method = log.info if result == "applied" else log.error
        log_method("reload", result=result, error=error, needs_restart=needs_restart or [])
        return result == "applied"
