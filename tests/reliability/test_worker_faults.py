"""Worker faults under load, with figures: SIGKILL, hang, memory growth (real daemon, tiny model).

The watchdog path (the daemon's own event loop hangs → systemd kills and restarts the unit) is
tests/system/test_service_lifecycle.py::test_hung_daemon_is_killed_by_the_watchdog_and_restarted.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest
from contention import ONE_CPU_THREAD
from reliability_support import (
    FAST,
    TINY_TEXT,
    DaemonProcess,
    LoadResult,
    request,
    run_load,
    start_daemon,
    wait_for,
    worker_pid,
)
from soak_measure import Watch, judge

DEADLINE_S = 30.0  # [limits] request_timeout_s of these daemons
CLIENT_SLACK_S = 5.0  # a request may take its deadline plus this, never more
# Issue 7 asks for the engine back within 5 s of a SIGKILL. Workers are forked from a fork server that
# imported torch + f5-tts once (engine/start.py), so a restart is the tiny model's load and warm-up only:
# 0.31-0.33 s with one OpenMP thread (contention.py) at load 3-4; with torch's default two threads on the
# loaded 2-core box 0.3-3.6 s in 4 runs and 7.9 s in a fifth (load 5-6: warm-up stalls, see contention.py).
# A spawned worker took 5.9-14 s (mostly imports).
ENGINE_BACK_S = 5.0
# After the fork server itself was killed, the next worker start pays the imports once more.
ENGINE_BACK_AFTER_FORK_SERVER_S = 60.0
TOTAL, CONCURRENCY, KILL_AFTER = 200, 8, 40
# Short enough for a quick hang test, long enough that a busy 2-core box is not taken for a hang.
HEARTBEAT_S, PING_S = 10.0, 0.5

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fault_daemon(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> Iterator[DaemonProcess]:
    daemon = start_daemon(tmp_path_factory.mktemp("faults"), models_dir, env=ONE_CPU_THREAD,
                          daemon={"fault_injection": True},
                          engine={"heartbeat_timeout_s": HEARTBEAT_S, "ping_interval_s": PING_S},
                          limits={"request_timeout_s": DEADLINE_S})
    yield daemon
    assert daemon.stop() == 0, daemon.log()[-3000:]


class EngineWatch:
    """Polls /v1/status from a thread: when the engine left `old_pid` and when it was ready again."""

    def __init__(self, daemon: DaemonProcess, old_pid: int) -> None:
        self.daemon, self.old_pid = daemon, old_pid
        self.left_at: float | None = None
        self.back_at: float | None = None
        self.new_pid: int | None = None
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        deadline = time.monotonic() + 120
        while self.back_at is None and time.monotonic() < deadline:
            engine = self.daemon.status()["engine"]
            now = time.monotonic()
            if self.left_at is None and (engine["state"] != "ready" or engine["pid"] != self.old_pid):
                self.left_at = now
            if engine["state"] == "ready" and engine["pid"] not in (None, self.old_pid):
                self.back_at, self.new_pid = now, engine["pid"]
            time.sleep(0.05)

    def join(self) -> None:
        self._thread.join(130)


def check_answers(result: LoadResult) -> None:
    """Every request answered in time, with 200 or 503 + Retry-After (never a hang, never a reset)."""
    assert set(result.by_status()) <= {200, 503}, result.by_status()
    for outcome in result.outcomes:
        if outcome.status == 503:
            assert outcome.retry_after and int(outcome.retry_after) >= 1, outcome
    assert result.slowest_s <= DEADLINE_S + CLIENT_SLACK_S, result.slowest_s


def load_average() -> str:
    return "load average " + " ".join(f"{value:.1f}" for value in os.getloadavg())


@dataclass
class KillUnderLoad:
    result: LoadResult
    killed_pid: int
    new_pid: int | None
    back_s: float


def kill_under_load(daemon: DaemonProcess) -> KillUnderLoad:
    """TOTAL requests at CONCURRENCY; the worker SIGKILLed after KILL_AFTER answers; when it served again."""
    killed: dict[str, Any] = {}

    def kill_once(answered: int) -> None:
        if answered == KILL_AFTER and not killed:
            pid = worker_pid(daemon)
            assert pid is not None
            os.kill(pid, signal.SIGKILL)
            killed.update(at=time.monotonic(), pid=pid, watch=EngineWatch(daemon, pid))

    result = run_load(daemon.socket, TOTAL, CONCURRENCY, {"text": TINY_TEXT, **FAST},
                      DEADLINE_S + CLIENT_SLACK_S + 5, kill_once)
    watch = killed["watch"]
    assert isinstance(watch, EngineWatch)
    watch.join()
    assert watch.back_at is not None, daemon.status()["engine"]
    return KillUnderLoad(result, killed["pid"], watch.new_pid, watch.back_at - killed["at"])


def test_sigkill_during_200_requests_at_concurrency_8(fault_daemon: DaemonProcess) -> None:
    run = kill_under_load(fault_daemon)
    result, back_s, engine = run.result, run.back_s, fault_daemon.status()["engine"]
    print(f"\nFIGURE sigkill: {TOTAL} requests at concurrency {CONCURRENCY}, worker SIGKILLed after "
          f"{KILL_AFTER} answers: statuses {result.by_status()}, slowest {result.slowest_s:.2f}s "
          f"(deadline {DEADLINE_S:.0f}s), engine back {back_s:.2f}s after the kill "
          f"(pid {run.killed_pid} -> {run.new_pid}; its boot {engine['boot_s']:.2f}s of which warm-up "
          f"{engine['warm_s']:.2f}s); {load_average()}")
    check_answers(result)
    assert 1 <= result.count(503) <= CONCURRENCY, "the kill should fail only the work in hand"
    assert back_s <= ENGINE_BACK_S, f"engine back after {back_s:.1f}s (> {ENGINE_BACK_S}s)"


def ready_standby(daemon: DaemonProcess) -> dict[str, Any] | None:
    standby = daemon.status()["engine"]["standby"]
    return standby if standby["state"] == "ready" else None


def test_sigkill_under_load_with_a_warm_standby(tmp_path: Path, models_dir: Path) -> None:
    """[engine] standby: the standby serves at once; its replacement boots (yielding) while the load goes on."""
    daemon = start_daemon(tmp_path, models_dir, env=ONE_CPU_THREAD, engine={"standby": True},
                          limits={"request_timeout_s": DEADLINE_S})
    try:
        standby_pid = wait_for(lambda: ready_standby(daemon), 60, "the standby")["pid"]
        run = kill_under_load(daemon)
        replacement = wait_for(lambda: ready_standby(daemon), 60, "the replacement standby")
        print(f"\nFIGURE sigkill with standby: {TOTAL} requests at concurrency {CONCURRENCY}: statuses "
              f"{run.result.by_status()}, slowest {run.result.slowest_s:.2f}s, engine back {run.back_s:.3f}s after "
              f"the kill (status polled every 0.05 s; pid {run.killed_pid} -> standby {run.new_pid}); replacement "
              f"standby {replacement['pid']} booted in {replacement['boot_s']:.2f}s; {load_average()}")
        check_answers(run.result)
        assert run.new_pid == standby_pid, "the standby should have taken over"
        assert 1 <= run.result.count(503) <= CONCURRENCY, "the kill should fail only the work in hand"
        assert int(replacement["pid"]) not in (standby_pid, run.killed_pid)
    finally:
        assert daemon.stop() == 0, daemon.log()[-3000:]


def test_hung_worker_is_recycled_and_no_request_waits_past_its_deadline(fault_daemon: DaemonProcess) -> None:
    old_pid = worker_pid(fault_daemon)
    assert old_pid is not None
    injected = request(fault_daemon.socket, "POST", "/v1/admin/fault", {"kind": "hang", "amount": 3600})
    assert injected.status == 200, injected.body
    hung_at = time.monotonic()
    watch = EngineWatch(fault_daemon, old_pid)
    result = run_load(fault_daemon.socket, 16, 4, {"text": TINY_TEXT, **FAST}, DEADLINE_S + CLIENT_SLACK_S + 5)
    watch.join()
    assert watch.left_at is not None and watch.back_at is not None, fault_daemon.status()["engine"]
    detect_s, back_s = watch.left_at - hung_at, watch.back_at - watch.left_at
    print(f"\nFIGURE hang: detected after {detect_s:.2f}s (heartbeat_timeout_s {HEARTBEAT_S}, ping "
          f"{PING_S}s), engine back {back_s:.2f}s after detection; 16 requests at concurrency 4: "
          f"{result.by_status()}, slowest {result.slowest_s:.2f}s; {load_average()}")
    check_answers(result)
    assert not process_alive(old_pid), "the hung worker is still running"
    # from the injection: the worker's progress clock starts when the first job reaches it, which on a
    # loaded 2-core box can take seconds; a hang must still be caught within two heartbeats
    assert detect_s <= 2 * HEARTBEAT_S, f"hang detected only after {detect_s:.1f}s"
    assert back_s <= ENGINE_BACK_S, f"engine back {back_s:.1f}s after the hang was detected"
    assert "worker hung" in fault_daemon.log()


def fork_server_of(daemon: DaemonProcess) -> psutil.Process:
    assert daemon.process is not None
    [server] = [child for child in psutil.Process(daemon.process.pid).children()
                if "multiprocessing.forkserver" in " ".join(child.cmdline())]
    return server


def ended(process: psutil.Process) -> bool:
    try:
        return process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_a_dead_fork_server_does_not_wedge_restarts(fault_daemon: DaemonProcess) -> None:
    """Kill the fork server, then the worker: multiprocessing starts a new server, the engine comes back."""
    server, old_pid = fork_server_of(fault_daemon), worker_pid(fault_daemon)
    assert old_pid is not None and psutil.Process(old_pid).ppid() == server.pid  # forked by the server
    server.kill()
    wait_for(lambda: ended(server), 10, "the fork server's end")
    killed_at = time.monotonic()
    os.kill(old_pid, signal.SIGKILL)
    watch = EngineWatch(fault_daemon, old_pid)
    watch.join()
    assert watch.back_at is not None, fault_daemon.status()["engine"]
    back_s, new_server = watch.back_at - killed_at, fork_server_of(fault_daemon)
    print(f"\nFIGURE fork server killed, then the worker: engine back {back_s:.2f}s after the kill "
          f"(fork server {server.pid} -> {new_server.pid}, pays the imports again); {load_average()}")
    assert new_server.pid != server.pid and new_server.is_running()
    assert request(fault_daemon.socket, "POST", "/v1/tts", {"text": TINY_TEXT, **FAST}).status == 200
    assert back_s <= ENGINE_BACK_AFTER_FORK_SERVER_S


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


MIB = 1024 * 1024
GROW_MIB, CEILING_ABOVE_MIB = 300, 150


def test_memory_growth_recycles_the_worker_with_zero_failed_requests(tmp_path: Path, models_dir: Path) -> None:
    daemon = start_daemon(tmp_path, models_dir, daemon={"fault_injection": True},
                          jobs={"enabled": True, "sample_interval_s": 1, "leak_window": 6,
                                "leak_slope_mib_per_hour": 1e9, "rss_ceiling_mib": 0},
                          gpu={"backend": "none", "lock_clocks": False})
    try:
        assert request(daemon.socket, "GET", "/v1/jobs").status == 200, "the job runner is not wired"
        memory_growth_scenario(daemon)
    finally:
        daemon.stop()


def memory_growth_scenario(daemon: DaemonProcess) -> None:
    rss, ceiling_mib = set_rss_ceiling_above_the_worker(daemon)
    old_pid = worker_pid(daemon)
    assert request(daemon.socket, "POST", "/v1/admin/fault", {"kind": "grow_memory",
                                                              "amount": GROW_MIB * MIB}).status == 200
    grown_at = time.monotonic()
    with SteadyLoad(daemon) as load:
        wait_for(lambda: worker_pid(daemon) not in (None, old_pid), 120, "the leak recycle")
        recycled_s = time.monotonic() - grown_at
        time.sleep(2.0)
    engine = daemon.status()["engine"]
    print(f"\nFIGURE leak: worker rss {rss / MIB:.0f} MiB, ceiling {ceiling_mib} MiB, +{GROW_MIB} MiB "
          f"injected; recycled after {recycled_s:.1f}s ({engine['last_restart']}); requests meanwhile "
          f"{load.result.by_status()}")
    assert load.result.outcomes and load.result.by_status() == {200: len(load.result.outcomes)}
    assert str(engine["last_restart"]).startswith("leak")


def set_rss_ceiling_above_the_worker(daemon: DaemonProcess) -> tuple[int, int]:
    """Reload with [jobs] rss_ceiling_mib = the worker's RSS + CEILING_ABOVE_MIB; (rss bytes, ceiling MiB)."""
    rss = wait_for(lambda: daemon.status()["engine"]["worker_rss_bytes"], 30, "a worker RSS reading")
    ceiling_mib = rss // MIB + CEILING_ABOVE_MIB
    daemon.config.write_text(daemon.config.read_text().replace("rss_ceiling_mib = 0",
                                                                f"rss_ceiling_mib = {ceiling_mib}"))
    daemon.signal(signal.SIGHUP)
    wait_for(lambda: daemon.status().get("reload", {}).get("result") == "applied", 30, "the reload")
    return rss, ceiling_mib


class SteadyLoad:
    """Concurrency 2, tiny texts, from a thread, for as long as the `with` block lasts."""

    def __init__(self, daemon: DaemonProcess) -> None:
        self.daemon, self.result = daemon, LoadResult()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> SteadyLoad:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(60)

    def _run(self) -> None:
        while not self._stop.is_set():
            batch = run_load(self.daemon.socket, 4, 2, {"text": TINY_TEXT, **FAST}, DEADLINE_S + CLIENT_SLACK_S)
            self.result.outcomes += batch.outcomes


LEAK_CHECK_S = 10.0


def test_the_soak_measurement_catches_a_real_leak(fault_daemon: DaemonProcess) -> None:
    """test_soak.py's measurement, on a worker that really leaks (fault injection: 4 MiB every 0.5 s)."""
    with Watch(fault_daemon) as watch:
        deadline = time.monotonic() + LEAK_CHECK_S
        while time.monotonic() < deadline:
            assert request(fault_daemon.socket, "POST", "/v1/admin/fault",
                           {"kind": "grow_memory", "amount": 4 * MIB}).status == 200
            assert request(fault_daemon.socket, "POST", "/v1/tts", {"text": TINY_TEXT, **FAST}).status == 200
            time.sleep(0.5)
    problems = judge(watch.after(0), LEAK_CHECK_S)
    print(f"\nFIGURE soak leak check: {problems}")
    assert any(problem.startswith("worker rss") for problem in problems), problems
