"""HTTP over the daemon's Unix socket (aiohttp UnixConnector), with errors a person can act on.

    async with DaemonClient("/run/ishowttsd/ishowttsd.sock", timeout=120) as daemon:
        status = await daemon.get_json("/v1/status")

A socket that is missing, refused or forbidden raises DaemonDown (the CLI exits 3); an error
answer from the daemon raises DaemonError with its JSON code and message (the CLI exits 1).
"""

from __future__ import annotations

import asyncio
import errno
import json
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import aiohttp

BASE_URL = "http://localhost"

CONNECT_REASONS: Mapping[int, str] = {
    errno.ENOENT: "no socket at that path",
    errno.ECONNREFUSED: "connection refused (a stale socket file: nothing is listening)",
    errno.EACCES: "permission denied: your user must be in the socket's group "
                  "(see `ls -l` on the socket; `usermod -aG GROUP $USER`, then log in again)",
}


class DaemonDown(Exception):
    """The daemon cannot be reached at all."""


class DaemonError(Exception):
    """The daemon answered with an error (or not in time)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{message} ({code}, HTTP {status})" if status else f"{message} ({code})")
        self.status, self.code, self.message = status, code, message


def down_message(socket_path: str, reason: str) -> str:
    return f"cannot reach ishowttsd at {socket_path}: {reason} — is it running? (systemctl status ishowttsd)"


def connect_reason(error: OSError) -> str:
    """Why the connection failed, in words (pure: keyed by errno)."""
    return CONNECT_REASONS.get(error.errno or 0, error.strerror or str(error))


def error_from_body(status: int, body: bytes) -> DaemonError:
    """A DaemonError from the daemon's JSON error body, or from whatever text came back."""
    try:
        error = json.loads(body)["error"]
        return DaemonError(status, str(error["code"]), str(error["message"]))
    except (ValueError, KeyError, TypeError):
        text = body.decode("utf-8", "replace").strip()[:500]
        return DaemonError(status, f"http_{status}", text or "no body")


@dataclass(frozen=True)
class Reply:
    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class DaemonClient:
    """One session to the daemon; use as an async context manager."""

    def __init__(self, socket_path: str, timeout: float = 120.0) -> None:
        self.socket_path = socket_path
        self.timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> DaemonClient:
        connector = aiohttp.UnixConnector(path=self.socket_path)
        self._session = aiohttp.ClientSession(BASE_URL, connector=connector,
                                              timeout=aiohttp.ClientTimeout(total=self.timeout))
        return self

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        if self._session is not None:
            await self._session.close()

    async def request(self, method: str, path: str, **kwargs: Any) -> Reply:
        """Send one request; raises DaemonDown, or DaemonError for status >= 400 or a timeout."""
        if self._session is None:
            raise RuntimeError("use DaemonClient as `async with DaemonClient(...) as client`")
        try:
            async with self._session.request(method, path, **kwargs) as response:
                reply = Reply(response.status, dict(response.headers), await response.read())
        except aiohttp.ClientConnectorError as exc:
            raise DaemonDown(down_message(self.socket_path, connect_reason(exc.os_error))) from exc
        except aiohttp.ServerDisconnectedError as exc:
            raise DaemonDown(down_message(self.socket_path, "the daemon closed the connection")) from exc
        except asyncio.TimeoutError as exc:
            raise DaemonError(0, "timeout", f"no answer within {self.timeout:g} s (see --timeout)") from exc
        if reply.status >= 400:
            raise error_from_body(reply.status, reply.body)
        return reply

    async def get_json(self, path: str) -> Any:
        return (await self.request("GET", path)).json()

    async def post_json(self, path: str, body: Mapping[str, Any]) -> Reply:
        return await self.request("POST", path, json=dict(body))

    async def status(self) -> dict[str, Any]:
        return await self.get_json("/v1/status")

    async def synthesize(self, body: Mapping[str, Any]) -> Reply:
        """POST /v1/tts; the reply body is the audio, its headers carry X-Seed and timings."""
        return await self.post_json("/v1/tts", body)

    async def list_voices(self) -> list[dict[str, Any]]:
        return (await self.get_json("/v1/voices"))["voices"]

    async def add_voice(self, name: str, audio: bytes, filename: str, text: str) -> dict[str, Any]:
        form = aiohttp.FormData()
        form.add_field("name", name)
        form.add_field("text", text)
        form.add_field("audio", audio, filename=filename, content_type="application/octet-stream")
        return (await self.request("POST", "/v1/voices", data=form)).json()

    async def remove_voice(self, name: str) -> None:
        await self.request("DELETE", f"/v1/voices/{urllib.parse.quote(name, safe='')}")
