"""ishowttsctl jobs [run ID] | config backups | backup | rollback [ID] | reset | logs [-f] [-n N].

This module does not import ishowttsd.ctl.cli (cli.py imports it): the command table entries are
built with the `Command` class handed in. In cli.py:

    from ishowttsd.ctl import jobs_cmd
    ...
    Command("config", "configuration files", children=(
        Command("check", "validate a config file", run_config_check, file_argument),
        *jobs_cmd.config_commands(Command),
    )),
    *jobs_cmd.top_level_commands(Command),

Exit codes as in cli.py: 0 ok, 1 error (or a job that failed / flagged a problem), 2 usage.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
from collections.abc import Callable, Mapping, Sequence
from typing import IO, TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from ishowttsd.ctl.cli import CliContext

C = TypeVar("C")
EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2
RUN_EXIT = {"ok": EXIT_OK, "skipped": EXIT_OK, "flagged": EXIT_ERROR, "error": EXIT_ERROR}
UNIT = "ishowttsd"
JOB_COLUMNS = "{id:<10} {status:<8} {last:<16} {next:<16} {runs:>6} {fails:>5}  {result}"


# --- formatting (pure) ---------------------------------------------------------------------------
def short_time(iso: str | None) -> str:
    """"2026-11-25T09:00:03+01:00" → "2026-11-25 09:00"; None → "-"."""
    return iso[:16].replace("T", " ") if iso else "-"


def format_jobs(jobs: Sequence[Mapping[str, Any]]) -> str:
    header = JOB_COLUMNS.format(id="JOB", status="STATUS", last="LAST RUN", next="NEXT RUN", runs="RUNS",
                                fails="FAILS", result="LAST RESULT")
    return "\n".join([header, *map(format_job_row, jobs)])


def format_job_row(job: Mapping[str, Any]) -> str:
    next_run = "running" if job.get("running") else short_time(job.get("next_run"))
    return JOB_COLUMNS.format(id=job["id"], status=job.get("last_status") or "-",
                              last=short_time(job.get("last_run")), next=next_run, runs=job.get("runs", 0),
                              fails=job.get("failures", 0), result=(job.get("last_result") or "")[:120])


def format_job_run(job: Mapping[str, Any]) -> str:
    took = f"{job.get('last_status')} in {job.get('last_duration_s')} s"
    lines = [f"{job['id']}: {took} — {job.get('last_result')}"]
    if job.get("retry_at"):
        lines.append(f"retry scheduled at {short_time(job['retry_at'])}")
    return "\n".join(lines)


def format_backup(backup: Mapping[str, Any]) -> str:
    flag = "" if backup.get("verified", True) else "  (no sidecar: unverified)"
    return (f"{backup['id']:<36} {short_time(backup.get('created'))}  {backup.get('reason', ''):<14} "
            f"{backup.get('size', 0):>7} B  sha256 {str(backup.get('sha256', ''))[:12]}{flag}")


def format_reload(reply: Mapping[str, Any], what: str) -> tuple[str, int]:
    reload = reply.get("reload") or {}
    applied = bool(reload.get("applied"))
    return f"{what}; reload {'applied' if applied else 'NOT applied'}: {reload.get('message', '')}", (
        EXIT_OK if applied else EXIT_ERROR)


def journalctl_argv(binary: str, args: argparse.Namespace) -> list[str]:
    """journalctl arguments for `ishowttsctl logs` (pure)."""
    argv = [binary, "-u", args.unit, "-n", str(args.lines), "--no-pager"]
    options = (("--since", args.since), ("--directory", args.directory))
    argv += [item for option, value in options if value for item in (option, value)]
    return argv + (["-f"] if args.follow else [])


# --- jobs ----------------------------------------------------------------------------------------
async def run_jobs(args: argparse.Namespace, ctx: CliContext) -> int:
    return await JOBS_ACTIONS[args.action](args, ctx)


async def _jobs_list(args: argparse.Namespace, ctx: CliContext) -> int:
    async with ctx.client() as daemon:
        jobs = (await daemon.get_json("/v1/jobs"))["jobs"]
    print(json.dumps(jobs, indent=2) if args.json else format_jobs(jobs), file=ctx.out)
    return EXIT_OK


async def _jobs_run(args: argparse.Namespace, ctx: CliContext) -> int:
    if not args.job_id:
        print("usage: ishowttsctl jobs run ID   (ids: see `ishowttsctl jobs`)", file=ctx.err)
        return EXIT_USAGE
    async with ctx.client() as daemon:
        job = (await daemon.request("POST", f"/v1/jobs/{args.job_id}/run")).json()["job"]
    print(json.dumps(job, indent=2) if args.json else format_job_run(job), file=ctx.out)
    return RUN_EXIT.get(str(job.get("last_status")), EXIT_ERROR)


JOBS_ACTIONS: dict[str, Callable[[argparse.Namespace, CliContext], Any]] = {
    "list": _jobs_list, "run": _jobs_run,
}


def jobs_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", nargs="?", choices=sorted(JOBS_ACTIONS), default="list",
                        help="list (default) or run")
    parser.add_argument("job_id", nargs="?", metavar="ID", help="the job to run now (with `run`)")
    parser.add_argument("--json", action="store_true", help="print the raw JSON")


# --- config backups ------------------------------------------------------------------------------
async def run_config_backups(args: argparse.Namespace, ctx: CliContext) -> int:
    async with ctx.client() as daemon:
        backups = (await daemon.get_json("/v1/config/backups"))["backups"]
    print("\n".join(map(format_backup, backups)) or "no backups yet", file=ctx.out)
    return EXIT_OK


async def run_config_backup(args: argparse.Namespace, ctx: CliContext) -> int:
    async with ctx.client() as daemon:
        backup = (await daemon.post_json("/v1/config/backups", {"reason": args.reason})).json()["backup"]
    print(f"backed up {format_backup(backup)}", file=ctx.out)
    return EXIT_OK


async def run_config_rollback(args: argparse.Namespace, ctx: CliContext) -> int:
    body = {"id": args.id} if args.id else {}
    async with ctx.client() as daemon:
        reply = (await daemon.post_json("/v1/config/rollback", body)).json()
    text, code = format_reload(reply, f"restored {reply['restored']['id']}")
    print(text, file=ctx.out)
    return code


async def run_config_reset(args: argparse.Namespace, ctx: CliContext) -> int:
    async with ctx.client() as daemon:
        reply = (await daemon.post_json("/v1/config/reset", {})).json()
    saved = reply.get("backup")
    undo = f" (previous file saved; undo: ishowttsctl config rollback {saved['id']})" if saved else ""
    text, code = format_reload(reply, "installed the packaged defaults" + undo)
    print(text, file=ctx.out)
    return code


def backup_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--reason", default="manual", help="word(s) kept in the backup id (default: manual)")


def rollback_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("id", nargs="?", help="backup id (see `config backups`); default: the newest")


# --- logs ----------------------------------------------------------------------------------------
async def run_logs(args: argparse.Namespace, ctx: CliContext) -> int:
    binary = shutil.which("journalctl")
    if binary is None:
        print("error: journalctl not found: ishowttsd logs to the systemd journal", file=ctx.err)
        return EXIT_ERROR
    pipe = asyncio.subprocess.PIPE
    process = await asyncio.create_subprocess_exec(*journalctl_argv(binary, args), stdout=pipe, stderr=pipe)
    assert process.stdout is not None and process.stderr is not None
    await asyncio.gather(_copy_lines(process.stdout, ctx.out), _copy_lines(process.stderr, ctx.err))
    return await process.wait()


async def _copy_lines(stream: asyncio.StreamReader, out: IO[str]) -> None:
    async for line in stream:
        out.write(line.decode("utf-8", "replace"))
        out.flush()


def logs_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    parser.add_argument("-n", "--lines", type=int, default=50, help="how many recent lines (default 50)")
    parser.add_argument("--since", help='journalctl --since, e.g. "1 hour ago" or "2026-11-25 09:00"')
    parser.add_argument("--unit", default=UNIT, help=f"systemd unit (default {UNIT})")
    parser.add_argument("--directory", help="read journal files from this directory (a copied journal)")


# --- the command table entries -------------------------------------------------------------------
def config_commands(command: Callable[..., C]) -> tuple[C, ...]:
    """Children of `ishowttsctl config` (next to `check`), built with cli.Command."""
    return (
        command("backups", "list config backups, newest first", run_config_backups),
        command("backup", "back the config file up now", run_config_backup, backup_arguments),
        command("rollback", "restore a backup (default: the newest) and reload", run_config_rollback,
                rollback_arguments),
        command("reset", "install the packaged defaults (current file backed up first) and reload",
                run_config_reset),
    )


def top_level_commands(command: Callable[..., C]) -> tuple[C, ...]:
    """`ishowttsctl jobs [run ID]` and `ishowttsctl logs`, built with cli.Command."""
    return (
        command("jobs", "scheduled jobs: list them, or `jobs run ID` to run one now", run_jobs,
                jobs_arguments),
        command("logs", "the daemon's log (wraps journalctl -u ishowttsd)", run_logs, logs_arguments),
    )
