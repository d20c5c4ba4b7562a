"""ishowttsd under a real systemd: start, readiness, status, socket permissions, stop, watchdog."""

from __future__ import annotations

import time

import pytest
from harness import SystemdInstance
from sysdaemon import (
    CURL_COULD_NOT_CONNECT,
    GROUP_MEMBER,
    OUTSIDER,
    SERVICE,
    SERVICE_USER,
    SOCKET,
    START_TIMEOUT_S,
    daemon_status,
    ready_now,
    request,
    start_and_wait,
    synthesis_argv,
    synthesize,
)
from sysjournal import daemon_entries, entries, first_index, unit_started_index

pytestmark = pytest.mark.system

DRAINED_TEXT = " ".join(["This request is still being spoken while the service is asked to stop."] * 3)


def watch_start(sd: SystemdInstance) -> tuple[set[str], list[int], int]:
    """Start the unit and poll until active: status texts seen while activating, the /readyz
    answers seen while activating, and the /readyz answer right when it became active."""
    sd.systemctl("start", "--no-block", SERVICE)
    statuses: set[str] = set()
    early: list[int] = []
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        state, status = sd.show(SERVICE, "ActiveState"), sd.show(SERVICE, "StatusText")
        if state == "active":
            return statuses, early, request(sd, "/readyz", timeout=30).status
        assert state == "activating", f"{SERVICE} went {state}:\n{sd.unit_journal(SERVICE)}"
        statuses.add(status)
        if sd.path(SOCKET).exists():
            early.append(request(sd, "/readyz", timeout=30).status)
        time.sleep(0.2)
    raise TimeoutError(f"{SERVICE} not active after {START_TIMEOUT_S}s")


def test_ready_only_once_the_engine_answers(ishowttsd_instance: SystemdInstance) -> None:
    sd = ishowttsd_instance
    statuses, early_readyz, readyz_when_active = watch_start(sd)

    assert readyz_when_active == 200
    assert 503 in early_readyz, f"never saw the socket answer 'not ready' while loading: {early_readyz}"
    assert statuses - {""}, "no STATUS= while activating"
    assert sd.show(SERVICE, "StatusText").startswith("serving")
    journal = entries(sd, SERVICE)
    engine_ready = first_index(journal, lambda e: (e.get("EVENT"), e.get("STATE")) == ("engine_state", "ready"))
    assert engine_ready < unit_started_index(journal), "systemd saw READY=1 before the engine was ready"


def test_socket_serves_the_service_group_only(ishowttsd_instance: SystemdInstance) -> None:
    sd = ishowttsd_instance
    start_and_wait(sd)

    status, content_type, size = synthesize(sd, "Hello from the service user.", user=SERVICE_USER)
    assert (status, content_type) == (200, "audio/wav") and size > 44
    assert request(sd, "/readyz", user=GROUP_MEMBER).status == 200
    refused = request(sd, "/readyz", user=OUTSIDER)
    assert refused.curl_exit == CURL_COULD_NOT_CONNECT, refused
    owner = sd.run("stat", "-c", "%a %U %G", SOCKET, "/run/ishowttsd").stdout.split("\n")
    assert owner[:2] == [f"660 {SERVICE_USER} {SERVICE_USER}", f"750 {SERVICE_USER} {SERVICE_USER}"]


def test_daemon_runs_unprivileged_in_its_sandbox(ishowttsd_instance: SystemdInstance) -> None:
    sd = ishowttsd_instance
    start_and_wait(sd)
    pid = sd.show(SERVICE, "MainPID")
    status = sd.run("cat", f"/proc/{pid}/status").stdout
    fields = dict(line.split(":", 1) for line in status.splitlines())
    uid = str(sd.user_ids(SERVICE_USER)[0])

    assert fields["Uid"].split() == [uid] * 4
    assert int(fields["CapEff"], 16) == 0 and int(fields["CapBnd"], 16) == 0
    assert fields["NoNewPrivs"].strip() == "1"
    assert fields["Seccomp"].strip() == "2"
    probe = sd.run("nsenter", "-t", pid, "-m", "--", "sh", "-c", "touch /usr/probe", check=False)
    assert probe.returncode != 0 and "Read-only" in probe.stderr


def in_flight(sd: SystemdInstance) -> int:
    engine = daemon_status(sd).get("engine", {})
    return int(engine.get("in_flight", 0)) + int(engine.get("queue_depth", 0))


def test_stop_drains_and_removes_the_socket(ishowttsd_instance: SystemdInstance) -> None:
    sd = ishowttsd_instance
    start_and_wait(sd)
    sd.systemctl("log-level", "debug")
    main_pid = sd.show(SERVICE, "MainPID")
    client = sd.spawn_as(SERVICE_USER, *synthesis_argv(DRAINED_TEXT))
    sd.wait_for(lambda: in_flight(sd) > 0, 30, "the request to be in flight")

    sd.systemctl("stop", SERVICE)

    assert client.communicate(timeout=60)[0].split()[:2] == ["200", "audio/wav"], "in-flight request cut off"

    assert sd.show(SERVICE, "ActiveState") == "inactive"
    assert sd.show(SERVICE, "Result") == "success"
    assert sd.show(SERVICE, "ExecMainStatus") == "0"
    assert not sd.path(SOCKET).exists()
    journal = entries(sd, SERVICE)
    stopping = first_index(journal, lambda e: f"from PID {main_pid} (STOPPING=1" in str(e.get("MESSAGE")))
    answered = first_index(journal, lambda e: (e.get("EVENT"), e.get("ROUTE")) == ("request", "/v1/tts"))
    assert stopping < answered, "the request was answered before the stop began: nothing was drained"
    assert any(e.get("EVENT") == "stopped" for e in daemon_entries(journal))


def test_hung_daemon_is_killed_by_the_watchdog_and_restarted(
        fast_watchdog_instance: SystemdInstance) -> None:
    sd = fast_watchdog_instance
    start_and_wait(sd)
    first_pid = sd.show(SERVICE, "MainPID")

    injected = request(sd, "/v1/admin/fault", method="POST", body={"kind": "hang_loop"}, timeout=30)
    assert injected.status == 200, injected

    sd.wait_for(lambda: sd.show(SERVICE, "NRestarts") == "1", 60, "the watchdog restart")
    sd.wait_active(SERVICE, START_TIMEOUT_S)
    assert sd.show(SERVICE, "MainPID") != first_pid
    assert ready_now(sd)
    messages = [str(e.get("MESSAGE")) for e in entries(sd, SERVICE)]
    assert any("Watchdog timeout" in m for m in messages), "no watchdog timeout logged"
    assert any("SIGABRT" in m or "ABRT" in m for m in messages), "not killed with SIGABRT"
