"""Routes for the scheduled jobs and the config backups (R32, R33, R34).

    GET  /v1/jobs                 every job: schedule, next/last run, last result, counters
    POST /v1/jobs/{id}/run        run one now (404 unknown, 409 already running); answers when done
    GET  /v1/config/backups       backups, newest first
    POST /v1/config/backups       make one now ({"reason": "..."} optional)
    POST /v1/config/rollback      restore a backup ({"id": "..."}; none = the newest), then reload
    POST /v1/config/reset         install the packaged defaults (current file backed up first), then reload

Rollback and reset change the file and then call `reload()` (the daemon's SIGHUP path: validate,
back up, apply, health-check, roll back on failure); its result is part of the answer.
Errors are answered here as {"error": {"code", "message"}}, whatever app these routes join.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from ishowttsd.api.errors import ApiError, bad_request, error_response, not_found
from ishowttsd.configstore import BackupCorrupt, BackupNotFound, ConfigStore
from ishowttsd.jobs.scheduler import JobBusy, JobNotFound, JobRunner

Reload = Callable[[], Awaitable[bool]]
StoreAction = Callable[[ConfigStore, dict[str, Any]], Awaitable[web.Response]]
NO_CONFIG_FILE = ApiError(409, "no_config_file", "the daemon runs on built-in defaults (started without a "
                          "config file): there is nothing to back up, roll back or reset")
# exception type → (status, code) for the config store's failures
STORE_ERRORS: dict[type[Exception], tuple[int, str]] = {
    BackupNotFound: (404, "backup_not_found"),
    BackupCorrupt: (409, "backup_corrupt"),
    FileNotFoundError: (409, "config_file_missing"),
}


def _store_error(exc: Exception) -> web.Response:
    status, code = next(value for kind, value in STORE_ERRORS.items() if isinstance(exc, kind))
    return error_response(ApiError(status, code, str(exc)))


async def _json_object(request: web.Request) -> dict[str, Any]:
    """The request's JSON object body; an empty body is {}. ApiError 400 otherwise."""
    if not request.can_read_body:
        return {}
    try:
        body = await request.json()
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError, [[[[... too deep
        raise bad_request("invalid_json", f"body is not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise bad_request("invalid_json", "body must be a JSON object")
    return body


def _optional_text(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        raise bad_request("invalid_field", f"{key} must be a string")
    return value


class JobsHandlers:
    def __init__(self, runner: JobRunner, reload: Reload) -> None:
        self.runner, self.reload = runner, reload

    @property
    def store(self) -> ConfigStore | None:
        return self.runner.ctx.config_store

    async def list_jobs(self, request: web.Request) -> web.Response:
        return web.json_response({"jobs": self.runner.list_jobs()}, dumps=_dumps)

    async def run_job(self, request: web.Request) -> web.Response:
        job_id = request.match_info["id"]
        try:
            job = await self.runner.run_now(job_id)
        except JobNotFound:
            known = ", ".join(self.runner.specs)
            return error_response(not_found("job_not_found", f"no job {job_id!r}; jobs: {known}"))
        except JobBusy as exc:
            return error_response(ApiError(409, "job_running", str(exc)))
        return web.json_response({"job": job}, dumps=_dumps)

    async def list_backups(self, request: web.Request) -> web.Response:
        if self.store is None:
            return error_response(NO_CONFIG_FILE)
        backups = await asyncio.to_thread(self.store.list_backups)
        return web.json_response({"backups": [backup.to_dict() for backup in backups]})

    async def make_backup(self, request: web.Request) -> web.Response:
        return await self._with_store(request, self._make_backup)

    async def rollback(self, request: web.Request) -> web.Response:
        return await self._with_store(request, self._rollback)

    async def reset(self, request: web.Request) -> web.Response:
        return await self._with_store(request, self._reset)

    async def _with_store(self, request: web.Request, act: StoreAction) -> web.Response:
        if self.store is None:
            return error_response(NO_CONFIG_FILE)
        try:
            return await act(self.store, await _json_object(request))
        except ApiError as error:
            return error_response(error)
        except tuple(STORE_ERRORS) as exc:
            return _store_error(exc)

    async def _make_backup(self, store: ConfigStore, body: dict[str, Any]) -> web.Response:
        info = await asyncio.to_thread(store.backup, _optional_text(body, "reason") or "manual")
        return web.json_response({"backup": info.to_dict()}, status=201)

    async def _rollback(self, store: ConfigStore, body: dict[str, Any]) -> web.Response:
        info = await asyncio.to_thread(store.rollback, _optional_text(body, "id"))
        applied = await self.reload()
        return web.json_response({"restored": info.to_dict(), "reload": _reload_result(applied)})

    async def _reset(self, store: ConfigStore, body: dict[str, Any]) -> web.Response:
        saved = await asyncio.to_thread(store.reset_to_defaults)
        applied = await self.reload()
        backup = saved.to_dict() if saved else None
        return web.json_response({"backup": backup, "reload": _reload_result(applied)})


def _reload_result(applied: bool) -> dict[str, Any]:
    if applied:
        return {"applied": True, "message": "the daemon reloaded the restored file"}
    return {"applied": False, "message": "the reload failed its checks; the daemon kept (or went back to) "
                                         "its previous config; see `ishowttsctl status` and the log"}


def _dumps(value: Any) -> str:
    return json.dumps(value, default=str)


def jobs_routes(runner: JobRunner, reload: Reload) -> web.RouteTableDef:
    handlers, routes = JobsHandlers(runner, reload), web.RouteTableDef()
    routes.get("/v1/jobs")(handlers.list_jobs)
    routes.post("/v1/jobs/{id}/run")(handlers.run_job)
    routes.get("/v1/config/backups")(handlers.list_backups)
    routes.post("/v1/config/backups")(handlers.make_backup)
    routes.post("/v1/config/rollback")(handlers.rollback)
    routes.post("/v1/config/reset")(handlers.reset)
    return routes
