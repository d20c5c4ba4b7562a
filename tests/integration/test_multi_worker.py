"""Two CPU engine workers behind one socket (engine.devices = ["cpu", "cpu"]), the tiny model.

Requests spread over both; one worker SIGKILLed during a burst (every request 200 or 503 +
Retry-After, none hangs, the other serves, the killed one comes back); the leak path recycles only
the leaking worker under load with no failed request; a worker that cannot boot is out of rotation.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from daemon_harness import DaemonProcess, Reply, request, start_daemon

TWO_CPUS = {"devices": ["cpu", "cpu"], "ping_interval_s": 0.5}
JOBS = {"enabled": True, "sample_interval_s": 1, "clock_check_minutes": 1, "leak_window": 6,
        "leak_slope_mib_per_hour": 64.0}
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}  # two workers share the machine's cores
BURST = 12


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> Iterator[DaemonProcess]:
    daemon = start_daemon(tmp_path_factory.mktemp("pair"), models_dir, env=ONE_THREAD, engine=TWO_CPUS)
    wait_for(lambda: all(w["state"] == "ready" for w in workers(daemon)), 120, "both workers ready")
    yield daemon
    assert daemon.stop() == 0, daemon.log()[-3000:]


@pytest.fixture
def leaky_pair(tmp_path: Path, models_dir: Path) -> Iterator[DaemonProcess]:
    """Two workers with the memory jobs every second (a daemon of its own: its leak job recycles)."""
    daemon = start_daemon(tmp_path, models_dir, env=ONE_THREAD, engine=TWO_CPUS, jobs=JOBS,
                          gpu={"backend": "none"}, daemon={"fault_injection": True})
    wait_for(lambda: all(w["state"] == "ready" for w in workers(daemon)), 120, "both workers ready")
    yield daemon
    daemon.stop()


def workers(daemon: DaemonProcess) -> list[dict[str, Any]]:
    return list(daemon.status()["engine"]["workers"])


def wait_for(check: Any, timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"no {what} within {timeout_s}s")


def burst(daemon: DaemonProcess, count: int, text: str = "Two workers, one queue.") -> list[Reply | None]:
    """`count` concurrent requests; None marks one that did not finish in 90 s (a hang)."""
    replies: list[Reply | None] = [None] * count

    def one(index: int) -> None:
        replies[index] = request(daemon.socket, "POST", "/v1/tts", {"text": text, "seed": index}, timeout=90)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(95)
    return replies


def metric(daemon: DaemonProcess, name: str, *labels: str) -> float:
    text = request(daemon.socket, "GET", "/metrics").body.decode()
    lines = [line for line in text.splitlines() if line.startswith(name + "{") and all(x in line for x in labels)]
    return sum(float(line.rsplit(" ", 1)[1]) for line in lines)


def test_requests_spread_over_both_workers(pair: DaemonProcess) -> None:
    before = [w["jobs_finished"] for w in workers(pair)]
    replies = burst(pair, 16)
    assert [r.status if r else None for r in replies] == [200] * 16
    served = [w["jobs_finished"] - b for w, b in zip(workers(pair), before, strict=True)]
    print(f"16 concurrent requests: per worker {served}")
    assert all(count >= 3 for count in served), served
    engine = pair.status()["engine"]
    assert engine["state"] == "ready" and len(engine["workers"]) == 2
    assert {w["configured_device"] for w in engine["workers"]} == {"cpu"}
    assert 'worker="1"' in request(pair.socket, "GET", "/metrics").body.decode()


def test_a_killed_worker_fails_only_its_jobs_and_comes_back(pair: DaemonProcess) -> None:
    old = workers(pair)
    replies: list[Reply | None] = []
    runner = threading.Thread(target=lambda: replies.extend(burst(pair, BURST, "Keep both workers busy. " * 4)))
    runner.start()
    time.sleep(0.7)  # both workers hold jobs now
    killed_at = time.monotonic()
    os.kill(int(old[1]["pid"]), signal.SIGKILL)
    wait_for(lambda: workers(pair)[1]["pid"] != old[1]["pid"] or workers(pair)[1]["state"] != "ready",
             30, "the daemon noticing the kill")
    restarting = workers(pair)[1]["state"]
    during = request(pair.socket, "POST", "/v1/tts", {"text": "The other worker serves."}, timeout=90)
    runner.join(120)
    statuses = [r.status if r else None for r in replies]
    print(f"burst of {BURST} with worker 1 killed: {statuses}; while worker 1 {restarting}: {during.status}")
    assert None not in statuses and set(statuses) <= {200, 503}, statuses
    assert all(int(r.headers["retry-after"]) >= 1 for r in replies if r and r.status == 503)
    assert during.status == 200  # worker 0 serves while worker 1 restarts
    back = wait_for(lambda: next((w for w in workers(pair)[1:] if w["state"] == "ready"
                                  and w["pid"] != old[1]["pid"]), None), 120, "worker 1 back")
    print(f"worker 1 back {time.monotonic() - killed_at:.1f}s after SIGKILL (pid {old[1]['pid']} → {back['pid']})")
    now = workers(pair)
    assert now[0]["pid"] == old[0]["pid"] and now[1]["restarts"] == old[1]["restarts"] + 1
    assert "exited" in now[1]["last_restart"]
    assert [r.status for r in burst(pair, 4)] == [200] * 4


def test_the_leak_path_recycles_only_the_leaking_worker_without_failed_requests(
        leaky_pair: DaemonProcess) -> None:
    pair = leaky_pair
    old = workers(pair)
    failures: list[int] = []
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            reply = request(pair.socket, "POST", "/v1/tts", {"text": "Hello there.", "seed": 1}, timeout=90)
            if reply.status != 200:
                failures.append(reply.status)

    threads = [threading.Thread(target=load) for _ in range(3)]
    for thread in threads:
        thread.start()
    started = time.monotonic()
    try:
        deadline = time.monotonic() + 120
        while metric(pair, "tts_engine_worker_restarts_total", 'reason="leak"', 'worker="0"') < 1:
            assert time.monotonic() < deadline, pair.log()[-3000:]
            request(pair.socket, "POST", "/v1/admin/fault", {"kind": "grow_memory", "amount": 40e6})
            time.sleep(0.5)
        wait_for(lambda: workers(pair)[0]["state"] == "ready", 60, "worker 0 serving again")
        time.sleep(2.0)  # keep the load on across the switch and the old worker's drain
    finally:
        stop.set()
        for thread in threads:
            thread.join(90)
    now = workers(pair)
    others = metric(pair, "tts_engine_worker_restarts_total", 'reason="leak"', 'worker="1"')
    print(f"leak recycle of worker 0 under load after {time.monotonic() - started:.1f}s: failures {failures}; "
          f"worker 1 leak recycles {others:.0f}")
    assert failures == []
    assert now[0]["pid"] != old[0]["pid"] and "leak" in now[0]["last_restart"]


def test_a_worker_that_cannot_boot_is_out_of_rotation_while_the_other_serves(
        tmp_path: Path, models_dir: Path) -> None:
    daemon = start_daemon(tmp_path, models_dir, env=ONE_THREAD, engine={"devices": ["cpu", "cuda:7"]})
    try:
        engine = wait_for(lambda: (e := daemon.status()["engine"])["workers"][1]["state"] == "failed" and e,
                          120, "worker 1 out of rotation")
        print(f"engine {engine['state']}: {engine['detail']}")
        assert engine["state"] == "ready" and engine["workers"][0]["state"] == "ready"
        assert engine["workers"][1]["in_rotation"] is False and engine["workers"][1]["pid"] is not None
        assert "worker 1 (cuda:7) out of rotation" in engine["detail"] and "CUDA" in engine["detail"]
        assert [r.status if r else None for r in burst(daemon, 4)] == [200] * 4
        assert request(daemon.socket, "GET", "/readyz").status == 200
        assert metric(daemon, "ishowttsd_worker_state", 'worker="1"', 'state="failed"') == 1
    finally:
        daemon.stop()
