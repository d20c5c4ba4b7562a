"""Operator routes on the engine: recycle a worker (HTTP and ishowttsctl) and a profiler trace (R18)."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from daemon_harness import DaemonProcess, request

from ishowttsd.ctl.cli import main as ctl_main

TEXT = {"text": "Profile this line.", "seed": 1, "format": "pcm"}


def test_recycle_replaces_the_worker_and_requests_keep_working(fresh_daemon: DaemonProcess,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    old_pid = fresh_daemon.status()["engine"]["pid"]
    reply = request(fresh_daemon.socket, "POST", "/v1/engine/recycle", {"reason": "test"}, timeout=180)
    assert reply.status == 200, reply.body
    assert reply.json() == {"recycled": True, "worker": None, "reason": "operator: test"}
    engine = fresh_daemon.status()["engine"]
    assert engine["state"] == "ready" and engine["pid"] != old_pid
    assert engine["last_restart"] == "operator: test"
    assert request(fresh_daemon.socket, "POST", "/v1/tts", TEXT).status == 200

    assert ctl_main(["--socket", fresh_daemon.socket, "--timeout", "180", "recycle", "--worker", "0"]) == 0
    assert "recycled worker 0" in capsys.readouterr().out
    assert fresh_daemon.status()["engine"]["pid"] not in (old_pid, engine["pid"])


@pytest.mark.parametrize("body", [{"worker": 1}, {"worker": -1}, {"worker": "0"}, {"worker": True},
                                  {"reason": 5}, {"reason": "x" * 201}, [1]])
def test_recycle_rejects_bad_bodies_with_400(shared_daemon: DaemonProcess, body: object) -> None:
    raw = json.dumps(body).encode()
    reply = request(shared_daemon.socket, "POST", "/v1/engine/recycle", raw,
                    headers={"Content-Type": "application/json"})
    assert reply.status == 400, reply.body
    assert reply.json()["error"]["code"] in ("invalid_field", "invalid_json")


def test_profile_writes_a_trace_of_the_next_batch(shared_daemon: DaemonProcess) -> None:
    answers: list[object] = []
    asking = threading.Thread(target=lambda: answers.append(
        request(shared_daemon.socket, "POST", "/v1/engine/profile", {"batches": 1}, timeout=120)))
    asking.start()
    while asking.is_alive():  # the trace covers the next batch: keep the worker busy until it is written
        assert request(shared_daemon.socket, "POST", "/v1/tts", TEXT).status == 200
    reply = answers[0]
    assert reply.status == 200, reply.body
    path = Path(reply.json()["path"])
    assert path.parent.name == "profiles" and path.is_file()
    trace = json.loads(path.read_text())
    assert any(event.get("ph") == "X" for event in trace["traceEvents"])


def test_profile_rejects_a_bad_batch_count(shared_daemon: DaemonProcess) -> None:
    reply = request(shared_daemon.socket, "POST", "/v1/engine/profile", {"batches": 0})
    assert reply.status == 400 and reply.json()["error"]["code"] == "invalid_field"
