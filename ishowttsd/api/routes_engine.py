"""Operator routes on the engine workers.

    POST /v1/engine/profile   {"batches": 1-50}         a torch profiler trace of the next batches (R18);
                                                         answers when written: {"path", "batches"}
    POST /v1/engine/recycle   {"worker": N, "reason": ""} recycle one worker (N) or every worker in turn
                                                         (no "worker"); a worker out of rotation is booted again

The trace lands in state_dir/profiles/ (written by the worker). Errors are {"error": {"code", "message"}}.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

from aiohttp import web

from ishowttsd.api.errors import ENGINE_ERRORS, ApiError, bad_request, error_response
from ishowttsd.api.routes_jobs import _json_object
from ishowttsd.engine import protocol as p
from ishowttsd.engine.errors import EngineUnavailable

MAX_PROFILE_BATCHES = 50
PROFILE_TIMEOUT_S = 600.0
REASON_CHARS = 200


class EngineOps(Protocol):
    slots: list[Any]

    async def profile(self, path: str, batches: int = 5, timeout_s: float = 300.0) -> p.ProfileDone: ...

    async def recycle(self, reason: str, overlap: bool = True, worker: int | None = None) -> bool: ...


def _int_field(body: dict[str, Any], key: str, low: int, high: int, default: int | None) -> int | None:
    value = body.get(key, default)
    if value is None or (isinstance(value, int) and not isinstance(value, bool) and low <= value <= high):
        return value
    raise bad_request("invalid_field", f"{key!r} must be an integer from {low} to {high}")


def _reason(body: dict[str, Any]) -> str:
    reason = body.get("reason", "")
    if not isinstance(reason, str) or len(reason) > REASON_CHARS:
        raise bad_request("invalid_field", f"'reason' must be a string of at most {REASON_CHARS} characters")
    return reason


async def _answer(handling: Awaitable[web.Response]) -> web.Response:
    """The handler's answer, or its ApiError as a JSON error (whatever middleware the app has)."""
    try:
        return await handling
    except ApiError as error:
        return error_response(error)


class EngineHandlers:
    def __init__(self, engine: EngineOps, state_dir: Callable[[], Path]) -> None:
        self.engine, self.state_dir = engine, state_dir

    async def profile(self, request: web.Request) -> web.Response:
        return await _answer(self._profile(request))

    async def _profile(self, request: web.Request) -> web.Response:
        batches = _int_field(await _json_object(request), "batches", 1, MAX_PROFILE_BATCHES, 5) or 5
        folder = self.state_dir() / "profiles"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"trace-{time.strftime('%Y%m%d-%H%M%S')}-{time.monotonic_ns() % 10**6}.json"
        try:
            done = await self.engine.profile(str(path), batches, PROFILE_TIMEOUT_S)
        except EngineUnavailable as exc:
            raise ENGINE_ERRORS[EngineUnavailable](exc) from exc
        except TimeoutError as exc:
            raise ApiError(504, "profile_timeout", f"no trace within {PROFILE_TIMEOUT_S:.0f}s: the worker ran "
                           f"fewer than {batches} batches (send it traffic while profiling)") from exc
        if done.error:
            raise ApiError(500, "profile_failed", f"the worker could not write the trace: {done.error}")
        return web.json_response({"path": done.path, "batches": batches})

    async def recycle(self, request: web.Request) -> web.Response:
        return await _answer(self._recycle(request))

    async def _recycle(self, request: web.Request) -> web.Response:
        body = await _json_object(request)
        worker = _int_field(body, "worker", 0, len(self.engine.slots) - 1, None)
        reason = f"operator: {_reason(body) or 'recycle requested'}"
        if not await self.engine.recycle(reason, overlap=True, worker=worker):
            raise ApiError(409, "recycle_failed", "the new worker did not become ready; a worker that was "
                           "serving keeps serving (see /v1/status engine.workers)")
        return web.json_response({"recycled": True, "worker": worker, "reason": reason})


def engine_routes(engine: EngineOps, state_dir: Callable[[], Path]) -> web.RouteTableDef:
    handlers, routes = EngineHandlers(engine, state_dir), web.RouteTableDef()
    routes.post("/v1/engine/profile")(handlers.profile)
    routes.post("/v1/engine/recycle")(handlers.recycle)
    return routes
