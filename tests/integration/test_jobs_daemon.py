"""The runbook jobs inside the real daemon (tiny model): listing, running, status, leak → recycle."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from daemon_harness import DaemonProcess, request, start_daemon

from ishowttsd.ctl.cli import main as ctl_main

JOBS = {"enabled": True, "sample_interval_s": 1, "clock_check_minutes": 1, "leak_window": 6,
        "leak_slope_mib_per_hour": 64.0}


@pytest.fixture
def jobs_daemon(tmp_path: Path, models_dir: Path) -> Iterator[DaemonProcess]:
    daemon = start_daemon(tmp_path, models_dir, jobs=JOBS, gpu={"backend": "none"},
                          daemon={"fault_injection": True})
    deadline = time.monotonic() + 120  # /readyz answers before the canary; jobs start at READY
    while not daemon.status()["jobs"]["enabled"]:
        assert time.monotonic() < deadline, daemon.log()[-3000:]
        time.sleep(0.2)
    yield daemon
    daemon.stop()


def metric(daemon: DaemonProcess, name: str, labels: str) -> float:
    text = request(daemon.socket, "GET", "/metrics").body.decode()
    lines = [line for line in text.splitlines() if line.startswith(name + "{") and labels in line]
    return float(lines[0].rsplit(" ", 1)[1]) if lines else 0.0


def test_jobs_are_listed_run_and_shown_in_status(jobs_daemon: DaemonProcess, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    jobs = request(jobs_daemon.socket, "GET", "/v1/jobs").json()["jobs"]
    assert {job["id"] for job in jobs} >= {"clocks", "sampler", "health", "backup", "updates"}
    assert next(job for job in jobs if job["id"] == "clocks")["runs"] >= 1  # locked (n/a) before READY
    reply = request(jobs_daemon.socket, "POST", "/v1/jobs/health/run", timeout=60)
    assert reply.status == 200 and reply.json()["job"]["last_status"] in ("ok", "flagged")
    assert list((tmp_path / "log" / "health").glob("*.json"))
    assert jobs_daemon.status()["jobs"]["enabled"] is True
    assert ctl_main(["--socket", jobs_daemon.socket, "jobs"]) == 0
    assert "sampler" in capsys.readouterr().out


def recycle_events(daemon: DaemonProcess) -> list[dict[str, object]]:
    """The daemon's engine_recycle log events (JSON lines): reason, overlap and why."""
    complete = daemon.log().rpartition("\n")[0]  # not the line being written
    lines = [line for line in complete.splitlines() if '"event": "engine_recycle"' in line]
    return [json.loads(line) for line in lines]


def test_a_growing_worker_is_recycled_without_failed_requests(jobs_daemon: DaemonProcess) -> None:
    failures: list[tuple[int, str]] = []  # (status, body): the body names the cause of a 503
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            reply = request(jobs_daemon.socket, "POST", "/v1/tts", {"text": "Hello there.", "seed": 1})
            if reply.status != 200:
                failures.append((reply.status, reply.body.decode(errors="replace")[:300]))

    threads = [threading.Thread(target=load) for _ in range(2)]
    for thread in threads:
        thread.start()
    try:
        deadline = time.monotonic() + 90
        # Grow only until the leak job starts the recycle: growing the retiring worker while its
        # successor boots (slow under CPU contention) would make the test, not the daemon, exhaust
        # the host's memory (OOM kill or MemoryError in the worker: 503s that are no recycle's fault).
        while not recycle_events(jobs_daemon):
            assert time.monotonic() < deadline, jobs_daemon.log()[-3000:]
            request(jobs_daemon.socket, "POST", "/v1/admin/fault", {"kind": "grow_memory", "amount": 40e6})
            time.sleep(0.5)
        while metric(jobs_daemon, "tts_engine_restarts_total", 'reason="leak"') < 1:
            assert time.monotonic() < deadline, jobs_daemon.log()[-3000:]
            time.sleep(0.2)
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)
    recycles = recycle_events(jobs_daemon)
    assert recycles and str(recycles[0]["reason"]).startswith("leak"), recycles
    # Zero failed requests across a recycle, overlapped or (memory too tight for two) drained first.
    assert failures == [], (failures, recycles)
    leak = next(job for job in request(jobs_daemon.socket, "GET", "/v1/jobs").json()["jobs"]
                if job["id"] == "leak")
    assert "leak" in json.dumps(leak)
