"""Update check (R15, R16, R20): report only; "could not check" offline. No network beyond loopback."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from test_jobs_support import make_rig

from ishowttsd.jobs.updates import (
    PIP_INDEX,
    UpdateChecker,
    installed_version,
    network_problem,
    requirement_name,
    run_updates,
    tracked_packages,
)

LATEST = {"torch": "9.0.0", "vocos": None}  # None: the index has no such package


def fake_pip(argv: Sequence[str], timeout_s: float) -> subprocess.CompletedProcess[str]:
    """Answers like `pip index versions NAME --json`."""
    name = argv[len(PIP_INDEX)]
    latest = LATEST.get(name, installed_version(name) or "1.0")
    if latest is None:
        return subprocess.CompletedProcess(argv, 1, "", f"ERROR: No matching distribution found for {name}\n")
    body = {"name": name, "versions": [latest], "latest": latest}
    return subprocess.CompletedProcess(argv, 0, json.dumps(body), "")


def test_report_lists_outdated_packages_with_a_note_for_torch() -> None:
    report = UpdateChecker(runner=fake_pip).check(["torch", "vocos", "aiohttp"])
    rows = {row["name"]: row for row in report["packages"]}
    assert report["result"] == "checked"
    assert rows["torch"]["outdated"] is True and rows["torch"]["installed"] == installed_version("torch")
    assert "Jetson" in rows["torch"]["note"]
    assert rows["aiohttp"]["outdated"] is False and rows["aiohttp"]["latest"] == installed_version("aiohttp")
    assert rows["vocos"]["latest"] is None and "No matching distribution" in rows["vocos"]["error"]


def test_a_real_pip_against_an_unreachable_index_could_not_check() -> None:
    offline = UpdateChecker(command=(sys.executable, "-m", "pip", "--isolated", "index", "versions"),
                            options=("--json", "--retries", "1", "--timeout", "2",
                                     "--index-url", "http://127.0.0.1:9/simple"), timeout_s=60)
    report = offline.check(["vocos", "torch"])
    assert report["result"] == "could not check" and report["packages"] == []
    assert "127.0.0.1" in report["reason"]


def test_a_missing_pip_could_not_check() -> None:
    report = UpdateChecker(command=("/nonexistent/pip",)).check(["torch"])
    assert report["result"] == "could not check" and "FileNotFoundError" in report["reason"]


def test_a_python_without_pip_could_not_check() -> None:
    no_pip = UpdateChecker(command=(sys.executable, "-m", "no_such_pip_module", "index", "versions"))
    report = no_pip.check(["torch", "vocos"])
    assert report["result"] == "could not check" and "No module named no_such_pip_module" in report["reason"]


async def test_job_writes_updates_json_and_never_installs(tmp_path: Path) -> None:
    calls: list[list[str]] = []

    def recording(argv: Sequence[str], timeout_s: float) -> subprocess.CompletedProcess[str]:
        calls.append(list(argv))
        return fake_pip(argv, timeout_s)

    rig = make_rig(tmp_path)
    outcome = await run_updates(rig.ctx, UpdateChecker(runner=recording))
    saved = json.loads((rig.ctx.log_dir / "updates.json").read_text())
    assert outcome.status == "ok" and outcome.summary.startswith("updates available: torch ")
    assert saved["result"] == "checked" and saved["checked_at"]
    names = [argv[len(PIP_INDEX)] for argv in calls]
    assert names[:4] == ["torch", "torchaudio", "f5-tts", "vocos"] and "aiohttp" in names
    assert all(argv[3:5] == ["index", "versions"] for argv in calls)  # only ever queries


async def test_job_flags_could_not_check(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    outcome = await run_updates(rig.ctx, UpdateChecker(command=("/nonexistent/pip",)))
    assert outcome.status == "flagged" and outcome.summary.startswith("could not check: ")


def test_requirement_names_and_tracked_packages() -> None:
    assert requirement_name('tomli>=2.0; python_version < "3.11"') == "tomli"
    assert requirement_name('pytest>=8; extra == "test"') is None
    assert requirement_name("F5_TTS<1.2,>=1.1.0") == "f5-tts"
    expected = ["torch", "torchaudio", "f5-tts", "vocos", "aiohttp"]
    assert tracked_packages(["torch>=2.4", "aiohttp>=3.9"]) == expected


def test_network_problem_spots_connection_errors_only() -> None:
    offline = "WARNING: Retrying (Retry(total=0)) after connection broken by 'NewConnectionError'"
    assert network_problem(offline) == offline
    assert network_problem("ERROR: No matching distribution found for x") is None
