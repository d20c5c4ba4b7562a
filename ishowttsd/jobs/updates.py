"""Weekly update check (R15, R16, R20): report only, never installs.

For torch, torchaudio, f5-tts, vocos and the daemon's own dependencies it compares the installed
version (importlib.metadata) with the newest on the configured index (`pip index versions NAME
--json`, with a timeout, in a worker thread). Without network the report says "could not check"
and why. The result goes to log_dir/updates.json (atomic) and the log.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import importlib.metadata as metadata
import json
import re
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import structlog

from ishowttsd.fsutil import atomic_write_text
from ishowttsd.jobs.context import JobContext, JobOutcome

log = structlog.get_logger(__name__)
UPDATES_FILE = "updates.json"
OWN_DISTRIBUTION = "ishowttsd"
ENGINE_PACKAGES = ("torch", "torchaudio", "f5-tts", "vocos")
PIP_INDEX = (sys.executable, "-m", "pip", "index", "versions")
PIP_OPTIONS = ("--json", "--retries", "1", "--timeout", "15", "--no-cache-dir", "--disable-pip-version-check")
COMMAND_TIMEOUT_S = 90.0
NETWORK_HINTS = ("NewConnectionError", "Failed to establish", "Could not fetch URL", "Retrying (",
                 "Temporary failure in name resolution", "Name or service not known", "Read timed out",
                 "ProxyError", "SSLError", "Network is unreachable", "ConnectTimeoutError")
NOTES = {"torch": "install the build for this box (CUDA, or NVIDIA's Jetson wheels), never a plain "
                  "`pip install --upgrade torch`; test before production",
         "torchaudio": "must match the torch build",
         "f5-tts": "test synthesis quality and RTF before upgrading"}
CommandRunner = Callable[[Sequence[str], float], subprocess.CompletedProcess[str]]


def run_command(argv: Sequence[str], timeout_s: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout_s, check=False)


def normalize(name: str) -> str:
    """PEP 503 name normalisation."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str | None:
    """The distribution name of a requirement string, None for optional extras."""
    if "extra ==" in requirement:
        return None
    found = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement.strip())
    return normalize(found.group(0)) if found else None


def tracked_packages(own_requires: Sequence[str] | None) -> list[str]:
    """The engine packages first, then the daemon's own runtime dependencies, without duplicates."""
    own = [name for name in map(requirement_name, own_requires or []) if name]
    return list(dict.fromkeys([*map(normalize, ENGINE_PACKAGES), *own]))


def own_requirements() -> list[str]:
    """The daemon's declared dependencies ([] when it runs from a source tree, not installed)."""
    try:
        return metadata.requires(OWN_DISTRIBUTION) or []
    except metadata.PackageNotFoundError:
        return []


def installed_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def network_problem(stderr: str) -> str | None:
    """The stderr line that shows the index could not be reached, if any."""
    for line in stderr.splitlines():
        if any(hint in line for hint in NETWORK_HINTS):
            return line.strip()[:300]
    return None


def interpret(name: str, installed: str | None, proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """One package's row from `pip index versions NAME --json` output (pure)."""
    row: dict[str, Any] = {"name": name, "installed": installed, "latest": None, "outdated": None}
    try:
        latest = json.loads(proc.stdout)["latest"] if proc.returncode == 0 else None
    except (ValueError, KeyError, TypeError):
        latest = None
    if latest is None:
        return {**row, "error": _last_line(proc.stderr) or f"pip exited {proc.returncode}"}
    outdated = installed is not None and _version_key(latest) > _version_key(installed)
    note = NOTES.get(name, "") if outdated else ""
    return {**row, "latest": str(latest), "outdated": outdated, "note": note}


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


def _version_key(version: str) -> tuple[Any, ...]:
    """Release numbers for ordering ("2.13.0+cpu" → (2, 13, 0)); local and pre-release tags ignored."""
    release = re.match(r"\d+(\.\d+)*", str(version))
    return tuple(int(part) for part in release.group(0).split(".")) if release else ()


@dataclass(frozen=True)
class UpdateChecker:
    """Runs the index queries; `runner` and the pip command are injectable (tests, other indexes)."""

    runner: CommandRunner = run_command
    command: Sequence[str] = PIP_INDEX
    options: Sequence[str] = PIP_OPTIONS
    timeout_s: float = COMMAND_TIMEOUT_S

    def check(self, names: Sequence[str]) -> dict[str, Any]:
        rows = []
        for name in names:
            row, offline = self._query(name)
            if offline:
                return {"result": "could not check", "reason": offline, "packages": rows}
            rows.append(row)
        if rows and all("error" in row for row in rows):  # e.g. "No module named pip": nothing was checked
            return {"result": "could not check", "reason": rows[0]["error"], "packages": rows}
        return {"result": "checked", "reason": "", "packages": rows}

    def _query(self, name: str) -> tuple[dict[str, Any], str | None]:
        try:
            proc = self.runner([*self.command, name, *self.options], self.timeout_s)
        except (OSError, subprocess.SubprocessError) as exc:
            return {}, f"{type(exc).__name__}: {exc}"
        offline = network_problem(proc.stderr) if proc.returncode != 0 else None
        return interpret(name, installed_version(name), proc), offline


def report_summary(report: Mapping[str, Any]) -> str:
    if report["result"] != "checked":
        return f"could not check: {report['reason']}"
    outdated = [f"{row['name']} {row['installed']} → {row['latest']}" for row in report["packages"]
                if row.get("outdated")]
    return ("updates available: " + ", ".join(outdated)) if outdated else "all tracked packages current"


async def run_updates(ctx: JobContext, checker: UpdateChecker) -> JobOutcome:
    names = tracked_packages(await asyncio.to_thread(own_requirements))
    report = await asyncio.to_thread(checker.check, names)
    report["checked_at"] = dt.datetime.fromtimestamp(ctx.clock()).astimezone().isoformat(timespec="seconds")
    path = ctx.log_dir / UPDATES_FILE
    await asyncio.to_thread(atomic_write_text, path, json.dumps(report, indent=1) + "\n")
    summary = report_summary(report)
    log.info("update_check", result=report["result"], summary=summary, path=str(path))
    status = "ok" if report["result"] == "checked" else "flagged"
    return JobOutcome(status, summary, report)
