"""The optional loopback TCP listener: off by default, loopback only, bearer token required.

The Unix socket's app has no token (file permissions guard it); the TCP listener serves a
second application built with `create_app(deps, require_token=TOKEN)`, on its own AppRunner
(aiohttp runs one application per runner). Wiring in the daemon:

    plan = prepare_tcp(config.daemon)                # in main(): TcpConfigError → exit 2
    listener = await open_tcp_site(self.build_app, config.daemon)  # build_app(token) → app
    ...
    await listener.stop()                            # with the Unix site: stop accepting
    await listener.close()                           # after the engine drained

The token file must exist, be a regular file, hold a non-empty token (first line, stripped)
and not be readable or writable by "others" (0600 or 0640 with the service group).
"""

from __future__ import annotations

import ipaddress
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import structlog
from aiohttp import web

from ishowttsd.config_schema import parse_loopback_listen

__all__ = ["TcpConfigError", "TcpListener", "TcpPlan", "open_tcp_site", "prepare_tcp", "token_file_problem"]

log = structlog.get_logger("ishowttsd")
MIN_TOKEN_CHARS = 16
OTHERS_ACCESS = stat.S_IROTH | stat.S_IWOTH


class TcpConfigError(Exception):
    """The TCP listener cannot start as configured; the message says which key and why."""


class TcpSettings(Protocol):
    """The [daemon] keys this module reads (ishowttsd.config.DaemonConfig satisfies it)."""

    tcp_listen: str
    tcp_token_file: Path | None


@dataclass(frozen=True)
class TcpPlan:
    host: str
    port: int
    token: str = ""

    def __repr__(self) -> str:  # never print the token
        return f"TcpPlan(host={self.host!r}, port={self.port})"


@dataclass
class TcpListener:
    """The running listener: its own runner and site."""

    runner: web.AppRunner
    site: web.TCPSite
    plan: TcpPlan

    async def stop(self) -> None:
        """Stop accepting connections (in-flight requests go on)."""
        await self.site.stop()

    async def close(self) -> None:
        await self.runner.cleanup()


def loopback_address(listen: str) -> tuple[str, int]:
    """(host, port) of `listen`; TcpConfigError unless the host is a loopback IP literal."""
    try:
        host, port = parse_loopback_listen(listen)
    except ValueError as exc:
        raise TcpConfigError(f"[daemon] tcp_listen = {listen!r}: {exc}; only 127.x.y.z:PORT or "
                             "[::1]:PORT are allowed") from exc
    if not ipaddress.ip_address(host).is_loopback:  # re-checked here whatever the schema said
        raise TcpConfigError(f"[daemon] tcp_listen = {listen!r}: {host} is not a loopback address")
    return host, port


def token_file_problem(mode: int, token: str) -> str:
    """Pure: what is wrong with a token file of this st_mode and content ("" = nothing)."""
    if not stat.S_ISREG(mode):
        return "is not a regular file"
    if mode & OTHERS_ACCESS:
        return (f"is accessible by other users (mode {stat.S_IMODE(mode):04o}); "
                "chmod 0600 (or 0640 with the service group)")
    if not token:
        return "is empty"
    if len(token) < MIN_TOKEN_CHARS:
        return f"holds a token of {len(token)} characters; use at least {MIN_TOKEN_CHARS}"
    return ""


def read_token(path: Path | None) -> str:
    """The bearer token from `path` (first line, stripped); TcpConfigError with the reason otherwise."""
    if path is None:
        raise TcpConfigError("[daemon] tcp_listen is set but tcp_token_file is empty: name a token file")
    try:
        mode = os.stat(path).st_mode
        first = path.read_text(encoding="utf-8").splitlines()[:1] if stat.S_ISREG(mode) else []
    except (OSError, UnicodeDecodeError) as exc:
        raise TcpConfigError(f"[daemon] tcp_token_file {path}: cannot read it: {exc}") from exc
    token = first[0].strip() if first else ""
    problem = token_file_problem(mode, token)
    if problem:
        raise TcpConfigError(f"[daemon] tcp_token_file {path} {problem}")
    return token


def prepare_tcp(daemon: TcpSettings) -> TcpPlan | None:
    """None when TCP is off (tcp_listen = ""); else the checked address and token."""
    if not daemon.tcp_listen:
        return None
    host, port = loopback_address(daemon.tcp_listen)
    return TcpPlan(host, port, read_token(daemon.tcp_token_file))


async def start_listener(build_app: Callable[[str], web.Application], plan: TcpPlan) -> TcpListener:
    runner = web.AppRunner(build_app(plan.token), handle_signals=False, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, plan.host, plan.port)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise TcpConfigError(f"[daemon] tcp_listen: cannot listen on {plan.host}:{plan.port}: "
                             f"{exc.strerror or exc}") from exc
    log.info("tcp_listening", host=plan.host, port=plan.port)
    return TcpListener(runner, site, plan)


async def open_tcp_site(build_app: Callable[[str], web.Application],
                        daemon: TcpSettings) -> TcpListener | None:
    """Start the token-protected loopback listener, or None when TCP is off.

    `build_app(token)` must return a fresh application that requires that bearer token
    (the daemon's `create_app(deps, require_token=token)` plus its extra routes).
    """
    plan = prepare_tcp(daemon)
    return None if plan is None else await start_listener(build_app, plan)
