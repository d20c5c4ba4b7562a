"""ishowttsd.tcp: loopback-only address, a safe token file, and a real token-protected listener."""

from __future__ import annotations

import socket
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.typedefs import Handler

from ishowttsd.api.app import bearer_token_middleware
from ishowttsd.api.errors import ApiError, error_response
from ishowttsd.tcp import TcpConfigError, loopback_address, open_tcp_site, prepare_tcp, read_token, token_file_problem

TOKEN = "0123456789abcdef0123"


@dataclass(frozen=True)
class Settings:
    tcp_listen: str = ""
    tcp_token_file: Path | None = None


def token_file(directory: Path, text: str = TOKEN + "\n", mode: int = 0o600) -> Path:
    path = directory / "token"
    path.write_text(text)
    path.chmod(mode)
    return path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_off_by_default() -> None:
    assert prepare_tcp(Settings()) is None


@pytest.mark.parametrize(("listen", "expected"), [("127.0.0.1:8080", ("127.0.0.1", 8080)),
                                                  ("127.5.6.7:1", ("127.5.6.7", 1)), ("[::1]:65535", ("::1", 65535))])
def test_loopback_addresses_are_accepted(listen: str, expected: tuple[str, int]) -> None:
    assert loopback_address(listen) == expected


@pytest.mark.parametrize("listen", ["0.0.0.0:8080", "10.0.0.1:80", "[::]:80", "localhost:80", "127.0.0.1",
                                    "127.0.0.1:0", "127.0.0.1:70000", "[::ffff:127.0.0.1]:80", "::1:80"])
def test_anything_else_is_refused(listen: str) -> None:
    with pytest.raises(TcpConfigError, match="tcp_listen"):
        loopback_address(listen)


@pytest.mark.parametrize(("mode", "token", "problem"), [
    (stat.S_IFREG | 0o600, TOKEN, ""), (stat.S_IFREG | 0o640, TOKEN, ""),
    (stat.S_IFREG | 0o644, TOKEN, "other users"), (stat.S_IFREG | 0o602, TOKEN, "other users"),
    (stat.S_IFREG | 0o600, "", "empty"), (stat.S_IFREG | 0o600, "short", "at least 16"),
    (stat.S_IFDIR | 0o700, TOKEN, "regular file")])
def test_token_file_problem(mode: int, token: str, problem: str) -> None:
    found = token_file_problem(mode, token)
    assert (problem in found) if problem else found == ""


def test_read_token_takes_the_first_line_stripped(tmp_path: Path) -> None:
    assert read_token(token_file(tmp_path, f"  {TOKEN}  \nsecond line\n")) == TOKEN


@pytest.mark.parametrize(("make", "words"), [(lambda d: None, "tcp_token_file is empty"),
                                             (lambda d: d / "missing", "cannot read"),
                                             (lambda d: token_file(d, mode=0o604), "other users"),
                                             (lambda d: token_file(d, "\n\n"), "is empty")])
def test_read_token_refuses_with_the_reason(tmp_path: Path, make: Callable[[Path], Path | None],
                                            words: str) -> None:
    with pytest.raises(TcpConfigError, match=words):
        read_token(make(tmp_path))


def test_the_plan_never_shows_its_token(tmp_path: Path) -> None:
    plan = prepare_tcp(Settings("127.0.0.1:8080", token_file(tmp_path)))
    assert plan is not None and plan.token == TOKEN and TOKEN not in repr(plan)


@web.middleware
async def errors_as_json(request: web.Request, handler: Handler) -> web.StreamResponse:
    """What the daemon's create_app does with an ApiError (the bearer middleware raises one)."""
    try:
        return await handler(request)
    except ApiError as error:
        return error_response(error)


def app_with_token(token: str) -> web.Application:
    async def ping(request: web.Request) -> web.Response:
        return web.json_response({"pong": True})

    app = web.Application(middlewares=[errors_as_json, bearer_token_middleware(token)])
    app.router.add_get("/ping", ping)
    return app


async def status_of(port: int, headers: dict[str, str]) -> int:
    async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}/ping",
                                                               headers=headers) as answer:
        return answer.status


async def test_the_listener_serves_loopback_with_the_token_only(tmp_path: Path) -> None:
    port = free_port()
    listener = await open_tcp_site(app_with_token, Settings(f"127.0.0.1:{port}", token_file(tmp_path)))
    assert listener is not None
    try:
        assert await status_of(port, {"Authorization": f"Bearer {TOKEN}"}) == 200
        assert await status_of(port, {"Authorization": "Bearer wrong"}) == 401
        assert await status_of(port, {}) == 401
    finally:
        await listener.stop()
        await listener.close()


async def test_a_port_in_use_is_a_clear_startup_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(TcpConfigError, match="cannot listen"):
            await open_tcp_site(app_with_token, Settings(f"127.0.0.1:{port}", token_file(tmp_path)))
