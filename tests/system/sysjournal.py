"""Reading a test instance's journal as structured entries (`journalctl -o json`)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from harness import SystemdInstance

UNIT_STARTED = "39f53479d3a045ac8e11786248231fbf"  # MESSAGE_ID of systemd's "Started <unit>"
DAEMON_IDENTIFIER = "ishowttsd"

Entry = dict[str, Any]


def entries(sd: SystemdInstance, unit: str, *args: str) -> list[Entry]:
    """All journal entries of `unit`, oldest first."""
    lines = sd.journalctl("-u", unit, "-o", "json", *args).stdout.splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def daemon_entries(journal: list[Entry]) -> list[Entry]:
    """Entries the daemon sent natively: its identifier and an EVENT field."""
    return [e for e in journal if e.get("SYSLOG_IDENTIFIER") == DAEMON_IDENTIFIER and "EVENT" in e]


def first_index(journal: list[Entry], predicate: Callable[[Entry], bool]) -> int:
    for index, entry in enumerate(journal):
        if predicate(entry):
            return index
    raise AssertionError("no such journal entry")


def unit_started_index(journal: list[Entry]) -> int:
    return first_index(journal, lambda e: e.get("MESSAGE_ID") == UNIT_STARTED)


def messages(journal: list[Entry]) -> list[str]:
    return [str(e.get("MESSAGE", "")) for e in journal]
