"""Operational routes: /healthz (alive), /readyz (engine ready), /v1/status, /metrics."""

from __future__ import annotations

import functools
import json
import time
from typing import TYPE_CHECKING

from aiohttp import web

import ishowttsd
from ishowttsd.api.errors import ApiError, error_response

if TYPE_CHECKING:
    from ishowttsd.api.app import AppDeps

# Engine info and extra sections may hold Paths or datetimes: render those as strings.
_dumps = functools.partial(json.dumps, default=str)
NOT_READY = ApiError(503, "not_ready",
                     "the engine is not ready (starting, restarting or failed); see /v1/status")


class OpsHandlers:
    def __init__(self, deps: AppDeps) -> None:
        self._deps = deps

    async def healthz(self, request: web.Request) -> web.Response:
        """Alive whenever the process answers; says nothing about the engine."""
        return web.json_response({"status": "alive"})

    async def readyz(self, request: web.Request) -> web.Response:
        if not self._deps.engine.is_ready():
            return error_response(NOT_READY)
        return web.json_response({"status": "ready"})

    async def status(self, request: web.Request) -> web.Response:
        return web.json_response(status_document(self._deps), dumps=_dumps)

    async def metrics(self, request: web.Request) -> web.Response:
        body, content_type = self._deps.metrics.render()
        return web.Response(body=body, headers={"Content-Type": content_type})


def status_document(deps: AppDeps) -> dict[str, object]:
    """The /v1/status JSON: version, uptime, config path, engine info, counters, plus the extra sections."""
    document: dict[str, object] = {
        "version": ishowttsd.__version__,
        "uptime_s": round(time.monotonic() - deps.started_at, 3),
        "config_path": str(deps.config_path) if deps.config_path else None,
        "engine": deps.engine.info(),
        "counters": deps.metrics.counters(),
    }
    document.update(deps.status_extra())
    return document


def routes(deps: AppDeps) -> list[web.RouteDef]:
    handlers = OpsHandlers(deps)
    return [
        web.get("/healthz", handlers.healthz),
        web.get("/readyz", handlers.readyz),
        web.get("/v1/status", handlers.status),
        web.get("/metrics", handlers.metrics),
    ]
