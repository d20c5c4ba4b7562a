"""api/app.py's access-log middleware: every request logged once, after its response is written."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from structlog.testing import capture_logs

from ishowttsd.api import app as app_module
from ishowttsd.api.app import access_log_middleware
from ishowttsd.metrics import Metrics


class RecordingResponse(web.Response):
    """Notes when aiohttp has handed the whole response to the transport."""

    order: list[str]

    async def write_eof(self, data: bytes = b"") -> None:
        await super().write_eof(data)
        self.order.append("response_written")


async def test_the_line_is_written_after_the_response(monkeypatch: pytest.MonkeyPatch) -> None:
    order: list[str] = []
    logged = asyncio.Event()
    real_log = app_module._log_request

    def log_request(request: web.Request, status: int, duration_ms: float) -> None:
        order.append("logged")
        real_log(request, status, duration_ms)
        logged.set()

    async def handler(request: web.Request) -> web.Response:
        response = RecordingResponse(body=b"x" * 200_000)
        response.order = order
        return response

    monkeypatch.setattr(app_module, "_log_request", log_request)
    app = web.Application(middlewares=[access_log_middleware(Metrics())])
    app.router.add_post("/v1/tts", handler)
    with capture_logs() as logs:
        async with TestClient(TestServer(app)) as client:
            reply = await client.post("/v1/tts")
            assert reply.status == 200 and len(await reply.read()) == 200_000
            await asyncio.wait_for(logged.wait(), 5)
    assert order == ["response_written", "logged"]
    (entry,) = [entry for entry in logs if entry["event"] == "request"]
    assert (entry["route"], entry["status"], entry["log_level"]) == ("/v1/tts", 200, "info")
    assert entry["duration_ms"] >= 0


async def test_a_failing_handler_is_logged_as_500() -> None:
    async def handler(request: web.Request) -> web.Response:
        raise RuntimeError("boom")

    app = web.Application(middlewares=[access_log_middleware(Metrics())])
    app.router.add_get("/v1/status", handler)
    with capture_logs() as logs:
        async with TestClient(TestServer(app)) as client:
            assert (await client.get("/v1/status")).status == 500
            await asyncio.sleep(0)
    assert [(e["route"], e["status"], e["log_level"]) for e in logs if e["event"] == "request"] == [
        ("/v1/status", 500, "debug")]
