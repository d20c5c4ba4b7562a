"""/v1/jobs and /v1/config/{backups,rollback,reset} over a real aiohttp server with a real JobRunner."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from test_jobs_support import DEFAULTS_TOML, Rig, config_store, make_rig

from ishowttsd.api.routes_jobs import jobs_routes
from ishowttsd.jobs.context import JobOutcome
from ishowttsd.jobs.scheduler import JobRunner


class Reloads:
    """Stands in for the daemon's reload (SIGHUP path); answers `result` and counts calls."""

    def __init__(self) -> None:
        self.calls, self.result = 0, True

    async def __call__(self) -> bool:
        self.calls += 1
        return self.result


@dataclasses.dataclass
class Api:
    client: TestClient
    runner: JobRunner
    reloads: Reloads
    rig: Rig

    async def call(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        response = await self.client.request(method, path, **kwargs)
        return response.status, await response.json()


async def serve(rig: Rig) -> AsyncIterator[Api]:
    runner, reloads = JobRunner(rig.ctx), Reloads()
    app = web.Application()
    app.add_routes(jobs_routes(runner, reloads))
    async with TestClient(TestServer(app)) as client:
        yield Api(client, runner, reloads, rig)


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    async for served in serve(make_rig(tmp_path, store=config_store(tmp_path))):
        yield served


@pytest.fixture
async def api_without_config(tmp_path: Path) -> AsyncIterator[Api]:
    async for served in serve(make_rig(tmp_path)):
        yield served


async def test_list_and_run_jobs(api: Api) -> None:
    status, body = await api.call("GET", "/v1/jobs")
    assert status == 200 and {job["id"] for job in body["jobs"]} >= {"backup", "health", "benchmark"}
    status, body = await api.call("POST", "/v1/jobs/backup/run")
    assert status == 200 and body["job"]["last_status"] == "ok" and body["job"]["runs"] == 1


async def test_unknown_job_is_404_json(api: Api) -> None:
    status, body = await api.call("POST", "/v1/jobs/defrag/run")
    assert status == 404 and body["error"]["code"] == "job_not_found" and "backup" in body["error"]["message"]


async def test_a_running_job_is_409(api: Api) -> None:
    release = asyncio.Event()

    async def slow() -> JobOutcome:
        await release.wait()
        return JobOutcome("ok", "done")

    api.runner.specs["quality"] = dataclasses.replace(api.runner.specs["quality"], run=slow)
    first = asyncio.create_task(api.call("POST", "/v1/jobs/quality/run"))
    while not api.runner.describe("quality")["running"]:
        await asyncio.sleep(0.01)
    status, body = await api.call("POST", "/v1/jobs/quality/run")
    release.set()
    assert status == 409 and body["error"]["code"] == "job_running"
    assert (await first)[0] == 200


async def test_backup_list_rollback_and_reload(api: Api) -> None:
    store = api.rig.ctx.config_store
    assert store is not None
    status, made = await api.call("POST", "/v1/config/backups", json={"reason": "before tuning"})
    assert status == 201 and made["backup"]["reason"] == "before tuning"
    store.config_path.write_text("[engine]\nnfe = 32\n")
    status, listed = await api.call("GET", "/v1/config/backups")
    assert status == 200 and listed["backups"][0]["id"] == made["backup"]["id"]
    status, body = await api.call("POST", "/v1/config/rollback", json={"id": made["backup"]["id"]})
    assert status == 200 and body["restored"]["id"] == made["backup"]["id"] and body["reload"]["applied"]
    assert store.config_path.read_text() == "[engine]\nnfe = 8\n" and api.reloads.calls == 1
    assert any(b.reason == "pre-rollback" for b in store.list_backups())  # the tuned file is kept


async def test_rollback_without_id_takes_the_newest_and_reports_a_failed_reload(api: Api) -> None:
    await api.call("POST", "/v1/config/backups")
    api.reloads.result = False
    status, body = await api.call("POST", "/v1/config/rollback")
    assert status == 200 and body["reload"]["applied"] is False and "previous config" in body["reload"]["message"]


async def test_rollback_errors(api: Api) -> None:
    status, body = await api.call("POST", "/v1/config/rollback", json={"id": "20990101T000000Z-nope"})
    assert status == 404 and body["error"]["code"] == "backup_not_found"
    status, body = await api.call("POST", "/v1/config/rollback", data=b"{oops",
                                  headers={"Content-Type": "application/json"})
    assert status == 400 and body["error"]["code"] == "invalid_json"
    status, body = await api.call("POST", "/v1/config/rollback", json={"id": 7})
    assert status == 400 and body["error"]["code"] == "invalid_field"
    assert api.reloads.calls == 0


async def test_reset_installs_the_defaults_after_a_backup(api: Api) -> None:
    store = api.rig.ctx.config_store
    assert store is not None
    status, body = await api.call("POST", "/v1/config/reset")
    assert status == 200 and body["reload"]["applied"] and body["backup"]["reason"] == "pre-reset"
    assert store.config_path.read_bytes() == DEFAULTS_TOML.read_bytes()
    assert Path(body["backup"]["path"]).read_text() == "[engine]\nnfe = 8\n"


async def test_without_a_config_file_config_routes_say_why(api_without_config: Api) -> None:
    for method, path in (("GET", "/v1/config/backups"), ("POST", "/v1/config/backups"),
                         ("POST", "/v1/config/rollback"), ("POST", "/v1/config/reset")):
        status, body = await api_without_config.call(method, path)
        assert status == 409 and body["error"]["code"] == "no_config_file"
