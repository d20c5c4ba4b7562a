"""ishowttsd under a real systemd: structured journal entries, and `systemctl reload`."""

from __future__ import annotations

import pytest
from harness import SystemdInstance
from sysdaemon import CONFIG, SERVICE, daemon_config, daemon_status, request, start_and_wait, synthesize
from sysjournal import Entry, daemon_entries, entries, first_index

pytestmark = pytest.mark.system

LONG_TEXT = "This sentence is longer than forty characters, on purpose."
RELOAD_WAIT_S = 120.0


def reload_and_wait(sd: SystemdInstance, result: str) -> dict[str, object]:
    """`systemctl reload`, then wait for the daemon to report `result` (reload returns before
    the daemon has handled SIGHUP) and for the unit to be active again."""
    sd.systemctl("reload", SERVICE)
    sd.wait_for(lambda: daemon_status(sd).get("reload", {}).get("result") == result,
                RELOAD_WAIT_S, f"reload result {result}")
    sd.wait_active(SERVICE, RELOAD_WAIT_S)
    return daemon_status(sd)["reload"]


def notifications(journal: list[Entry], pid: str) -> list[str]:
    """The sd_notify messages systemd received from `pid` (logged at debug level)."""
    marker = f"Got notification message from PID {pid} ("
    return [m.split(marker, 1)[1] for m in (str(e.get("MESSAGE")) for e in journal) if marker in m]


def test_journal_has_structured_fields_and_priorities(ishowttsd_instance: SystemdInstance) -> None:
    sd = ishowttsd_instance
    start_and_wait(sd)
    assert request(sd, "/v1/voices").status == 200
    # a harmless fault (clears a "slow" that was never set): logged at warning with its fields
    assert request(sd, "/v1/admin/fault", method="POST", body={"kind": "slow", "amount": 0}).status == 200

    events = daemon_entries(entries(sd, SERVICE))
    ready = events[first_index(events, lambda e: e["EVENT"] == "ready")]
    status_request = events[first_index(events, lambda e: (e["EVENT"], e.get("ROUTE")) == ("request", "/v1/voices"))]
    warning = events[first_index(events, lambda e: e["EVENT"] == "fault_injected")]
    assert ready["PRIORITY"] == "6" and ready["MODEL"] == "tiny"
    assert (status_request["PRIORITY"], status_request["STATUS"]) == ("6", "200")
    assert (warning["PRIORITY"], warning["KIND"]) == ("4", "slow")
    assert all(e["_SYSTEMD_UNIT"] == f"{SERVICE}.service" for e in events)


def test_reload_applies_the_new_config(ishowttsd_instance: SystemdInstance) -> None:
    sd = ishowttsd_instance
    start_and_wait(sd)
    sd.systemctl("log-level", "debug")
    pid = sd.show(SERVICE, "MainPID")
    assert synthesize(sd, LONG_TEXT)[0] == 200

    sd.write_file(CONFIG, daemon_config(max_text_chars=40))
    reload = reload_and_wait(sd, "applied")

    assert reload["error"] == ""
    assert synthesize(sd, LONG_TEXT)[0] in (400, 413, 422)
    assert synthesize(sd, "Short.")[0] == 200
    sent = notifications(entries(sd, SERVICE), pid)
    reloading = [i for i, m in enumerate(sent) if m.startswith("RELOADING=1, MONOTONIC_USEC=")]
    assert reloading and any(m.startswith("READY=1") for m in sent[reloading[0] + 1:]), sent
    assert sd.show(SERVICE, "MainPID") == pid


def test_broken_config_on_reload_is_rejected(ishowttsd_instance: SystemdInstance) -> None:
    sd = ishowttsd_instance
    start_and_wait(sd)
    pid = sd.show(SERVICE, "MainPID")

    sd.write_file(CONFIG, daemon_config() + "\n[limits]\nmax_text_chars = 'not a number'\n")
    reload = reload_and_wait(sd, "rejected")

    assert reload["error"]
    assert synthesize(sd, LONG_TEXT)[0] == 200
    assert sd.show(SERVICE, "MainPID") == pid
    events = daemon_entries(entries(sd, SERVICE))
    rejected = events[first_index(events, lambda e: e["EVENT"] == "reload" and e.get("RESULT") == "rejected")]
    assert rejected["PRIORITY"] == "3"
