"""The aiohttp application: dependencies under a typed AppKey, middlewares, the route tables.

Middleware order (outermost first): access log + request counter, errors → JSON, bearer token
(only for the TCP site). Handlers live in routes_tts / routes_voices / routes_ops.
"""

from __future__ import annotations

import asyncio
import hmac
import secrets
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from ishowttsd.api import routes_ops, routes_tts, routes_voices
from ishowttsd.api.errors import INTERNAL, ApiError, error_response, to_api_error
from ishowttsd.api.routes_tts import STREAM_ABORTED, TEXT_CHARS
from ishowttsd.config import Config, LimitsConfig
from ishowttsd.metrics import Metrics
from ishowttsd.voices import VoiceStore

if TYPE_CHECKING:
    from ishowttsd.engine.client import SynthesisRequest

log = structlog.get_logger(__name__)

UNMATCHED_ROUTE = "unmatched"


class EngineLike(Protocol):
    """What the API needs of ishowttsd.engine.client.EngineClient."""

    def is_ready(self) -> bool: ...

    def info(self) -> dict[str, object]: ...

    def synthesize(self, req: SynthesisRequest) -> AsyncIterator[bytes]: ...


def random_seed() -> int:
    return secrets.randbelow(2**31)


def no_extra_status() -> Mapping[str, object]:
    return {}


@dataclass(frozen=True)
class AppDeps:
    """Everything the handlers use.

    `get_config` is called per request, so a reload takes effect at once; `started_at` is a
    time.monotonic() reading; `status_extra` adds sections (jobs, hardware) to /v1/status.
    """

    get_config: Callable[[], Config]
    config_path: Path | None
    engine: EngineLike
    voices: VoiceStore
    metrics: Metrics
    started_at: float
    status_extra: Callable[[], Mapping[str, object]] = no_extra_status
    new_seed: Callable[[], int] = field(default=random_seed)


# Other parts (cleanup contexts, the daemon) find the dependencies here; handlers get them bound.
DEPS = web.AppKey("ishowttsd_deps", AppDeps)


def route_label(request: web.Request) -> str:
    """The route's pattern (bounded label set: /v1/voices/{name}, never the concrete path)."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else UNMATCHED_ROUTE


PROBE_ROUTES = frozenset({"/healthz", "/readyz", "/metrics", "/v1/status"})


def _log_request(request: web.Request, status: int, duration_ms: float) -> None:
    """Info for real work; debug for probes (health checks and scrapes would flood the journal)."""
    optional = {"text_chars": request.get(TEXT_CHARS), "aborted": request.get(STREAM_ABORTED)}
    route = route_label(request)
    emit = log.debug if route in PROBE_ROUTES else log.info
    emit("request", method=request.method, route=route, status=status, duration_ms=duration_ms,
         **{key: value for key, value in optional.items() if value is not None})


def access_log_middleware(metrics: Metrics) -> Middleware:
    """Log every request (never its text) and count it by route and status.

    The line is written on the loop's next turn: by then aiohttp has handed the response to the
    socket, so the log's cost is not part of the client's latency (duration_ms is taken here)."""

    @web.middleware
    async def access_log(request: web.Request, handler: Handler) -> web.StreamResponse:
        started, status = time.perf_counter(), 500
        try:
            response = await handler(request)
            status = response.status
            return response
        finally:
            duration_ms = round((time.perf_counter() - started) * 1000, 1)
            metrics.observe_request(route_label(request), status)
            asyncio.get_running_loop().call_soon(_log_request, request, status, duration_ms)

    return access_log


def error_middleware(metrics: Metrics) -> Middleware:
    """Turn every exception into a JSON error; unknown ones become a logged 500 without details."""

    @web.middleware
    async def errors_as_json(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            error = to_api_error(exc)
            _record_error(request, exc, error, metrics)
            return error_response(error)

    return errors_as_json


def _record_error(request: web.Request, exc: Exception, error: ApiError, metrics: Metrics) -> None:
    if error is INTERNAL:
        log.exception("request_failed", route=route_label(request), exc_info=exc)
    if error.counts_as_failure:
        metrics.observe_error(error.code)


def bearer_token_middleware(token: str) -> Middleware:
    """Require "Authorization: Bearer TOKEN" (constant-time comparison). Used for the TCP site only."""
    expected = f"Bearer {token}".encode()

    @web.middleware
    async def require_bearer(request: web.Request, handler: Handler) -> web.StreamResponse:
        given = request.headers.get("Authorization", "").encode()
        if not hmac.compare_digest(given, expected):
            raise ApiError(401, "unauthorized", "missing or wrong bearer token",
                           {"WWW-Authenticate": 'Bearer realm="ishowttsd"'})
        return await handler(request)

    return require_bearer


def client_max_size(limits: LimitsConfig) -> int:
    """aiohttp's bound on a body it reads whole (JSON); fixed when the app is built, so a reload cannot raise it."""
    return max(limits.max_body_bytes, limits.max_upload_bytes)


def create_app(deps: AppDeps, require_token: str | None = None) -> web.Application:
    """The application. `require_token`: bearer token every request must carry (TCP site); None = none."""
    limits = deps.get_config().limits
    middlewares = [access_log_middleware(deps.metrics), error_middleware(deps.metrics)]
    if require_token is not None:
        middlewares.append(bearer_token_middleware(require_token))
    app = web.Application(client_max_size=client_max_size(limits), middlewares=middlewares)
    app[DEPS] = deps
    for table in (routes_tts.routes(deps), routes_voices.routes(deps), routes_ops.routes(deps)):
        app.add_routes(table)
    return app
