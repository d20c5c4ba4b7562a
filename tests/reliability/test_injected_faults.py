"""The slow-worker and compile-failure faults against the real daemon (tiny model), with figures.

One daemon for the module: an 8 s request deadline (so a slowed batch can outlast it), a 15 s
heartbeat (longer than any injected delay: slow is not hung), compile = true with Dynamo's "eager"
backend (real torch.compile wrapping and warm-up, no C++ compiler run) on two small buckets.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from contention import ONE_CPU_THREAD
from reliability_support import FAST, TINY_TEXT, DaemonProcess, LoadResult, request, run_load, start_daemon, wait_for

# One OpenMP thread per worker (contention.py): a tiny request takes 0.1-0.3 s even on the loaded box.
DEADLINE_S, HEARTBEAT_S, PING_S = 8.0, 15.0, 0.5
CLIENT_SLACK_S = 3.0
SLOW_S = 1.5  # per batch: requests succeed, slower
STALL_S = 10.0  # one batch longer than the deadline (504), shorter than the heartbeat (not hung)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def injected_daemon(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> Iterator[DaemonProcess]:
    daemon = start_daemon(tmp_path_factory.mktemp("injected"), models_dir, env=ONE_CPU_THREAD,
                          daemon={"fault_injection": True},
                          engine={"heartbeat_timeout_s": HEARTBEAT_S, "ping_interval_s": PING_S, "compile": True,
                                  "compile_backend": "eager", "max_batch": 2, "max_frames": 1024,
                                  "min_frames": 768},
                          limits={"request_timeout_s": DEADLINE_S})
    yield daemon
    assert daemon.stop() == 0, daemon.log()[-3000:]


def fault(daemon: DaemonProcess, kind: str, amount: float = 0.0, timeout: float = 60.0, **extra: object) -> dict:
    reply = request(daemon.socket, "POST", "/v1/admin/fault", {"kind": kind, "amount": amount, "extra": extra},
                    timeout=timeout)
    assert reply.status == 200, reply.body
    return reply.json()


def load(daemon: DaemonProcess, total: int = 4, concurrency: int = 1) -> LoadResult:
    return run_load(daemon.socket, total, concurrency, {"text": TINY_TEXT, **FAST}, DEADLINE_S + CLIENT_SLACK_S + 5)


def median_s(result: LoadResult) -> float:
    return statistics.median(outcome.seconds for outcome in result.outcomes)


def load_average() -> str:
    return "load average " + " ".join(f"{value:.1f}" for value in os.getloadavg())


def engine_facts(daemon: DaemonProcess) -> tuple[object, object]:
    engine = daemon.status()["engine"]
    return engine["pid"], engine["restarts"]


def test_a_slow_worker_serves_slower_and_is_not_taken_for_a_hung_one(injected_daemon: DaemonProcess) -> None:
    before = engine_facts(injected_daemon)
    normal = load(injected_daemon)
    fault(injected_daemon, "slow", SLOW_S)
    try:
        slowed = load(injected_daemon)
    finally:
        fault(injected_daemon, "slow", 0.0)
    cleared = load(injected_daemon)
    print(f"\nFIGURE slow: {SLOW_S}s per batch: median {median_s(normal):.2f}s -> {median_s(slowed):.2f}s "
          f"(slowest {slowed.slowest_s:.2f}s, {slowed.by_status()}), cleared {median_s(cleared):.2f}s; "
          f"worker and restarts unchanged: {engine_facts(injected_daemon) == before}, graphs compiled while "
          f"serving {injected_daemon.status()['engine']['compiles_after_ready']}; {load_average()}")
    assert normal.by_status() == slowed.by_status() == cleared.by_status() == {200: 4}
    assert min(outcome.seconds for outcome in slowed.outcomes) >= SLOW_S
    assert median_s(cleared) < median_s(slowed), "amount 0 did not clear the delay"
    assert engine_facts(injected_daemon) == before, "the hang detector fired on a slow worker"


def test_a_batch_slower_than_the_deadline_gets_504_and_the_worker_keeps_serving(
        injected_daemon: DaemonProcess) -> None:
    before = engine_facts(injected_daemon)
    fault(injected_daemon, "slow", STALL_S, batches=1)
    stalled = load(injected_daemon, total=2, concurrency=2)
    codes = {outcome.code for outcome in stalled.outcomes}
    time.sleep(STALL_S - DEADLINE_S + 1.0)  # the stalled batch ends; its output is discarded
    after = load(injected_daemon, total=4)
    print(f"\nFIGURE slow past the deadline: {STALL_S}s batch, {DEADLINE_S}s deadline: {stalled.by_status()} "
          f"{sorted(codes)} after {stalled.slowest_s:.2f}s; next requests {after.by_status()}, "
          f"median {median_s(after):.2f}s; worker and restarts unchanged: {engine_facts(injected_daemon) == before}")
    assert stalled.by_status() == {504: 2} and codes == {"deadline_exceeded"}
    assert stalled.slowest_s <= DEADLINE_S + CLIENT_SLACK_S
    assert after.by_status() == {200: 4}
    assert engine_facts(injected_daemon) == before, "the hang detector fired on a slow worker"


def test_a_compile_failure_falls_back_to_eager_and_says_why(injected_daemon: DaemonProcess) -> None:
    engine = injected_daemon.status()["engine"]
    assert engine["compiled"] is True and engine["compile_error"] == "", engine
    started = time.monotonic()
    answer = fault(injected_daemon, "compile_failure", timeout=300)
    took = time.monotonic() - started
    engine = injected_daemon.status()["engine"]
    served = load(injected_daemon, total=4)
    print(f"\nFIGURE compile failure: recycled in {took:.1f}s ({answer}); compiled {engine['compiled']}, "
          f"compile_error {engine['compile_error'][:120]!r}; requests after {served.by_status()}")
    assert answer["recycled"] is True
    assert engine["compiled"] is False and engine["buckets"] == []
    reason = engine["compile_error"]
    assert reason.startswith("compiled warm-up failed") and "compile_failure" in reason
    assert str(engine["last_restart"]) == "fault: compile_failure"
    assert served.by_status() == {200: 4}
    assert "engine_compile_fallback" in injected_daemon.log() and "compile_failure" in injected_daemon.log()  # R6


def test_compile_recovers_on_the_next_recycle(injected_daemon: DaemonProcess) -> None:
    """The fault lasts one recycle: the spec is clean again, so the next worker (here: a restart) compiles."""
    old_pid = injected_daemon.status()["engine"]["pid"]
    fault(injected_daemon, "crash")
    wait_for(lambda: injected_daemon.status()["engine"]["pid"] not in (None, old_pid)
             and injected_daemon.status()["engine"]["state"] == "ready", 120, "the restarted worker")
    engine = injected_daemon.status()["engine"]
    assert engine["compiled"] is True and engine["compile_error"] == "", engine
