"""ishowttsctl jobs / config backups|backup|rollback|reset / logs, wired into cli.py's table as the lead
will wire them, against a real aiohttp server (real JobRunner + routes) on a temp Unix socket."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web
from structlog.testing import capture_logs
from test_jobs_support import DEFAULTS_TOML, Rig, config_store, make_rig

from ishowttsd.api.routes_jobs import jobs_routes
from ishowttsd.ctl.cli import COMMANDS, Command, main
from ishowttsd.ctl.jobs_cmd import (
    config_commands,
    format_jobs,
    journalctl_argv,
    short_time,
    top_level_commands,
)
from ishowttsd.jobs.context import JobOutcome
from ishowttsd.jobs.scheduler import JobRunner


def extended_commands() -> tuple[Command, ...]:
    """cli.COMMANDS, which includes this module's commands (checked below)."""
    config = next(command for command in COMMANDS if command.name == "config")
    names = {c.name for c in config.children} | {c.name for c in COMMANDS}
    wanted = {c.name for c in (*config_commands(Command), *top_level_commands(Command))}
    assert wanted <= names
    return COMMANDS


@dataclasses.dataclass
class Daemon:
    socket: str
    rig: Rig
    runner: JobRunner
    reloads: list[str]


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    short = Path(tempfile.mkdtemp(prefix="jc", dir="/tmp"))  # Unix socket paths must stay short
    rig = make_rig(tmp_path, store=config_store(tmp_path))
    reloads: list[str] = []

    async def reload() -> bool:
        reloads.append("reload")
        return True

    runner, loop = JobRunner(rig.ctx), asyncio.new_event_loop()
    app = web.Application()
    app.add_routes(jobs_routes(runner, reload))
    server = web.AppRunner(app)
    loop.run_until_complete(server.setup())
    loop.run_until_complete(web.UnixSite(server, str(short / "d.sock")).start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    with capture_logs():  # the daemon side's log lines must not mix with the CLI's stdout
        yield Daemon(str(short / "d.sock"), rig, runner, reloads)
    asyncio.run_coroutine_threadsafe(server.cleanup(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.close()
    shutil.rmtree(short)


def ctl(daemon: Daemon, *argv: str) -> int:
    return main(["--socket", daemon.socket, *argv], extended_commands())


def test_jobs_lists_every_job(daemon: Daemon, capsys: pytest.CaptureFixture[str]) -> None:
    assert ctl(daemon, "jobs") == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split()[:3] == ["JOB", "STATUS", "LAST"]
    assert {line.split()[0] for line in out.splitlines()[1:]} >= {"clocks", "backup", "benchmark", "updates"}


def test_jobs_run_runs_one_now_and_the_list_shows_it(daemon: Daemon, capsys: pytest.CaptureFixture[str]) -> None:
    assert ctl(daemon, "jobs", "run", "backup") == 0
    assert capsys.readouterr().out.startswith("backup: ok in ")
    assert ctl(daemon, "jobs", "list") == 0
    [row] = [line for line in capsys.readouterr().out.splitlines() if line.startswith("backup ")]
    assert row.split()[1] == "ok" and "backed up as" in row


def test_jobs_run_exit_codes(daemon: Daemon, capsys: pytest.CaptureFixture[str]) -> None:
    assert ctl(daemon, "jobs", "run") == 2 and "usage: ishowttsctl jobs run ID" in capsys.readouterr().err
    assert ctl(daemon, "jobs", "run", "defrag") == 1 and "job_not_found" in capsys.readouterr().err
    assert ctl(daemon, "jobs", "run", "benchmark") == 0  # not configured: skipped, not a failure

    async def regressed() -> JobOutcome:
        return JobOutcome("flagged", "regression: nfe 8")

    daemon.runner.specs["benchmark"] = dataclasses.replace(daemon.runner.specs["benchmark"], run=regressed)
    assert ctl(daemon, "jobs", "run", "benchmark") == 1
    assert "flagged" in capsys.readouterr().out


def test_config_backup_backups_rollback_reset(daemon: Daemon, capsys: pytest.CaptureFixture[str]) -> None:
    store = daemon.rig.ctx.config_store
    assert store is not None
    assert ctl(daemon, "config", "backup", "--reason", "before tuning") == 0
    backup_id = capsys.readouterr().out.split()[2]
    store.config_path.write_text("[engine]\nnfe = 16\n")
    assert ctl(daemon, "config", "backups") == 0
    assert capsys.readouterr().out.startswith(backup_id)
    assert ctl(daemon, "config", "rollback", backup_id) == 0
    assert capsys.readouterr().out.startswith(f"restored {backup_id}; reload applied")
    assert store.config_path.read_text() == "[engine]\nnfe = 8\n"
    assert ctl(daemon, "config", "reset") == 0
    assert "undo: ishowttsctl config rollback " in capsys.readouterr().out
    assert store.config_path.read_bytes() == DEFAULTS_TOML.read_bytes() and len(daemon.reloads) == 2


def test_logs_wraps_journalctl(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    if shutil.which("journalctl") is None:
        pytest.skip("journalctl not installed")
    assert main(["logs", "-n", "5", "--directory", str(tmp_path)], extended_commands()) == 0
    captured = capsys.readouterr()
    assert "No entries" in captured.out + captured.err


def test_logs_without_journalctl_says_so(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert main(["logs"], extended_commands()) == 1
    assert "journalctl not found" in capsys.readouterr().err


def test_journalctl_arguments() -> None:
    args = argparse.Namespace(unit="ishowttsd", lines=20, since="1 hour ago", directory=None, follow=True)
    assert journalctl_argv("/usr/bin/journalctl", args) == [
        "/usr/bin/journalctl", "-u", "ishowttsd", "-n", "20", "--no-pager", "--since", "1 hour ago", "-f"]


def test_formatting_is_pure() -> None:
    assert short_time("2026-11-25T09:00:03+01:00") == "2026-11-25 09:00" and short_time(None) == "-"
    text = format_jobs([{"id": "health", "last_status": None, "running": True, "runs": 0, "failures": 0}])
    assert text.splitlines()[1].split()[:3] == ["health", "-", "-"] and "running" in text
