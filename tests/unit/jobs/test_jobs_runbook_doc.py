"""docs/runbook.md has one row per runbook id R1–R35, and every test it names exists."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
RUNBOOK = REPO / "docs" / "runbook.md"
PREFIXES = {"jobs/": "tests/unit/jobs/", "decide/": "tests/unit/decide/", "hw/": "tests/unit/hw/",
            "integration/": "tests/integration/", "system/": "tests/system/"}


def test_one_row_per_runbook_id() -> None:
    ids = re.findall(r"^\| (R\d+) \|", RUNBOOK.read_text(), re.MULTILINE)
    assert ids == [f"R{number}" for number in range(1, 36)]


def _expand(path: str) -> Path:
    for short, full in PREFIXES.items():
        if path.startswith(short):
            return REPO / (full + path[len(short):])
    return REPO / path


def named_tests(text: str) -> list[tuple[Path, str]]:
    """(file, function) for `file.py::name` and the `::name` that follow it."""
    found, current = [], None
    for token in re.findall(r"`([^`]+)`", text):
        full = re.fullmatch(r"([\w/]+\.py)::(\w+)", token)
        if full:
            current = _expand(full.group(1))
        if (full or re.fullmatch(r"::\w+", token)) and current is not None:
            found.append((current, token.rsplit("::", 1)[1]))
    return found


def test_every_named_test_exists() -> None:
    named = named_tests(RUNBOOK.read_text())
    missing = [f"{path.relative_to(REPO)}::{name}" for path, name in named
               if not path.is_file() or not re.search(rf"^(async )?def {name}\(", path.read_text(), re.MULTILINE)]
    assert len(named) > 35 and missing == []
