"""The worker process dies or hangs; the daemon keeps its socket, answers 503 + Retry-After, recovers."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

from daemon_harness import DaemonProcess, request, start_daemon

LONG = "This line keeps the worker busy for a while. " * 12


def worker_pid(daemon: DaemonProcess) -> int:
    return int(daemon.status()["engine"]["pid"])


def wait_ready_again(daemon: DaemonProcess, old_pid: int, timeout_s: float = 120.0) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        engine = daemon.status()["engine"]
        if engine["state"] == "ready" and engine["pid"] != old_pid:
            return time.monotonic() - start
        time.sleep(0.1)
    raise AssertionError(f"engine not back: {daemon.status()['engine']}")


def test_main_process_never_loads_torch(fresh_daemon: DaemonProcess) -> None:
    assert fresh_daemon.process is not None
    main_maps = Path(f"/proc/{fresh_daemon.process.pid}/maps").read_text()
    worker_maps = Path(f"/proc/{worker_pid(fresh_daemon)}/maps").read_text()
    assert "libtorch" in worker_maps  # the check can see torch where it is loaded
    assert "libtorch" not in main_maps


def test_killed_worker_fails_inflight_with_503_then_recovers(fresh_daemon: DaemonProcess) -> None:
    old_pid = worker_pid(fresh_daemon)
    replies = []
    thread = threading.Thread(target=lambda: replies.append(
        request(fresh_daemon.socket, "POST", "/v1/tts", {"text": LONG, "nfe": 32})))
    thread.start()
    time.sleep(0.5)  # the job is in the worker now
    os.kill(old_pid, signal.SIGKILL)
    thread.join(60)
    assert replies and replies[0].status == 503, replies
    assert int(replies[0].headers["retry-after"]) >= 1
    assert replies[0].json()["error"]["code"]
    recovery_s = wait_ready_again(fresh_daemon, old_pid)
    print(f"engine back {recovery_s:.1f}s after SIGKILL")
    reply = request(fresh_daemon.socket, "POST", "/v1/tts", {"text": "Back again."})
    assert reply.status == 200
    engine = fresh_daemon.status()["engine"]
    assert engine["restarts"] == 1 and "exited" in engine["last_restart"]
    assert fresh_daemon.process is not None and fresh_daemon.process.poll() is None


def test_hung_worker_is_detected_and_replaced(tmp_path: Path, models_dir: Path) -> None:
    daemon = start_daemon(tmp_path, models_dir, daemon={"fault_injection": True},
                          engine={"heartbeat_timeout_s": 3.0, "ping_interval_s": 0.5})
    try:
        old_pid = worker_pid(daemon)
        assert request(daemon.socket, "POST", "/v1/admin/fault", {"kind": "hang"}).status == 200
        reply = request(daemon.socket, "POST", "/v1/tts", {"text": "Stuck behind a hang."})
        assert reply.status == 503
        wait_ready_again(daemon, old_pid)
        assert "hung" in daemon.log()
        assert request(daemon.socket, "POST", "/v1/tts", {"text": "Fine now."}).status == 200
    finally:
        daemon.stop()


def test_fault_route_does_not_exist_by_default(fresh_daemon: DaemonProcess) -> None:
    assert request(fresh_daemon.socket, "POST", "/v1/admin/fault", {"kind": "hang"}).status in (404, 405)


def test_boot_failure_is_reported_and_not_retried(tmp_path: Path, models_dir: Path) -> None:
    from daemon_harness import DaemonProcess as Proc
    from daemon_harness import write_config

    bogus = tmp_path / "missing.pt"
    config = write_config(tmp_path, models_dir, engine={"model": str(bogus)})
    daemon = Proc(config, str(tmp_path / "ishowttsd.sock"), tmp_path / "daemon.log").start()
    assert daemon.process is not None
    assert daemon.process.wait(120) == 3
    assert "does not exist" in daemon.log()


def wait_standby_ready(daemon: DaemonProcess, timeout_s: float = 120.0) -> dict:
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        standby = daemon.status()["engine"]["standby"]
        if standby["state"] == "ready":
            return standby
        time.sleep(0.1)
    raise AssertionError(f"standby not ready: {daemon.status()['engine']}")


def test_a_warm_standby_takes_over_a_killed_worker(tmp_path: Path, models_dir: Path) -> None:
    daemon = start_daemon(tmp_path, models_dir, engine={"standby": True})
    try:
        standby_pid = int(wait_standby_ready(daemon)["pid"])
        old_pid = worker_pid(daemon)
        assert standby_pid != old_pid and daemon.status()["engine"]["workers"][0]["standby"]["pid"] == standby_pid
        os.kill(old_pid, signal.SIGKILL)
        recovery_s = wait_ready_again(daemon, old_pid)
        engine = daemon.status()["engine"]
        print(f"standby serving {recovery_s:.2f}s after SIGKILL (status polled every 0.1 s)")
        assert engine["pid"] == standby_pid, engine  # the standby serves: no fresh boot
        assert request(daemon.socket, "POST", "/v1/tts", {"text": "Standby speaking."}).status == 200
        replacement = wait_standby_ready(daemon)  # and a new standby stands behind it
        assert int(replacement["pid"]) not in (old_pid, standby_pid)
        metrics = request(daemon.socket, "GET", "/metrics").body.decode()
        assert 'ishowttsd_standby_state{device="auto",state="ready",worker="0"} 1.0' in metrics, metrics[-2000:]
        assert "engine_standby" in daemon.log()  # each standby state change is a journal line
    finally:
        assert daemon.stop() == 0, daemon.log()[-3000:]
    assert not Path(f"/proc/{replacement['pid']}").exists(), "the standby outlived the daemon"
