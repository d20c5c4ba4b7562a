#!/usr/bin/env python3
"""How long a SIGKILLed worker keeps a daemon from serving, with and without a warm standby, side by side.

Two real daemons (tiny model, CPU) with the same settings but `[engine] standby` off and on; rounds
alternate between them (the order reversed every round). Each round, once the daemon is settled
(engine ready and, with standby, its standby ready too), the engine worker is SIGKILLed and two
times are taken from the kill: until /v1/status says ready on a new pid ("ready_s", polled every
--poll-ms), and until a synthesis sent right after the kill (and resent on a 503) returns 200
("first_audio_s": what a chat bot waits). `restart_window_s` is set to 1 s and rounds are spaced
beyond it, so neither daemon's restart backoff or budget comes into play: the comparison is a fresh
worker's boot against a standby's take-over. --compile boots compiled workers (torch.compile on
CPU: a boot that costs what a GPU boot's compile does, on a small scale).

    python3 scripts/recovery_cpu.py --rounds 5 --out recovery.json
    python3 scripts/recovery_cpu.py --rounds 3 --compile --out recovery_compiled.json
    python3 scripts/recovery_cpu.py --rounds 4 --max-pause-s 0 --out no_yield.json   # boots never yield
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "integration"))

from daemon_harness import DaemonProcess, request, start_daemon

BODY = {"text": "Back again.", "seed": 1, "format": "pcm"}
SETTLE_TIMEOUT_S = 900.0


def engine_of(daemon: DaemonProcess) -> dict:
    return daemon.status()["engine"]


def wait_until(check: Callable[[], bool], timeout_s: float, what: str, poll_s: float = 0.05) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(poll_s)


def settled(daemon: DaemonProcess, standby: bool) -> bool:
    engine = engine_of(daemon)
    return engine["state"] == "ready" and (not standby or engine["standby"]["state"] == "ready")


def first_audio(daemon: DaemonProcess, killed_at: float) -> float:
    """Seconds from the kill until a synthesis returns 200 (503s resent at once)."""
    while True:
        reply = request(daemon.socket, "POST", "/v1/tts", BODY)
        if reply.status == 200:
            return time.monotonic() - killed_at
        if reply.status != 503 or time.monotonic() - killed_at > SETTLE_TIMEOUT_S:
            raise RuntimeError(f"synthesis after the kill: {reply.status} {reply.body[:300]!r}")


def ready_again(daemon: DaemonProcess, old_pid: int, killed_at: float, poll_s: float) -> float:
    def back() -> bool:
        engine = engine_of(daemon)
        return engine["state"] == "ready" and engine["pid"] not in (None, old_pid)
    wait_until(back, SETTLE_TIMEOUT_S, "engine back", poll_s)
    return time.monotonic() - killed_at


def one_round(daemon: DaemonProcess, standby: bool, poll_s: float) -> dict[str, float]:
    wait_until(lambda: settled(daemon, standby), SETTLE_TIMEOUT_S, "settled")
    time.sleep(1.2)  # beyond restart_window_s: no backoff, no budget
    old_pid = int(engine_of(daemon)["pid"])
    killed_at = time.monotonic()
    os.kill(old_pid, signal.SIGKILL)
    ready_s = ready_again(daemon, old_pid, killed_at, poll_s)
    return {"ready_s": ready_s, "first_audio_s": first_audio(daemon, killed_at)}


def summary(values: list[float]) -> dict[str, float]:
    return {"median_s": statistics.median(values), "min_s": min(values), "max_s": max(values)}


@contextlib.contextmanager
def daemons(models: Path, compile_: bool, max_pause_s: float) -> Iterator[dict[str, DaemonProcess]]:
    engine = {"restart_window_s": 1.0, "compile": compile_, "boot_yield_max_pause_s": max_pause_s}
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        started = {}
        for name, standby in (("no_standby", False), ("standby", True)):
            daemon = start_daemon(Path(tmp) / name, models, engine={**engine, "standby": standby})
            stack.callback(daemon.stop)
            started[name] = daemon
        yield started


def run(models: Path, rounds: int, compile_: bool, poll_s: float, max_pause_s: float) -> dict[str, object]:
    times: dict[str, list[dict[str, float]]] = {"no_standby": [], "standby": []}
    boot: dict[str, object] = {}
    with daemons(models, compile_, max_pause_s) as started:
        for index in range(rounds):
            order = list(started.items()) if index % 2 == 0 else list(started.items())[::-1]
            for name, daemon in order:
                times[name].append(one_round(daemon, name == "standby", poll_s))
        boot = {name: {key: engine_of(d)[key] for key in ("boot_s", "warm_s", "compiled")}
                for name, d in started.items()}
    result: dict[str, object] = {name: {key: summary([t[key] for t in runs]) for key in ("ready_s", "first_audio_s")}
                                 for name, runs in times.items()}
    ratio = {key: result["no_standby"][key]["median_s"] / result["standby"][key]["median_s"]  # type: ignore[index]
             for key in ("ready_s", "first_audio_s")}
    return {**result, "no_standby_over_standby": ratio, "worker_boot": boot, "rounds": rounds,
            "compile": compile_, "boot_yield_max_pause_s": max_pause_s, "poll_ms": poll_s * 1000, "raw": times}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--compile", action="store_true", help="compiled workers (torch.compile on CPU)")
    parser.add_argument("--poll-ms", type=float, default=10.0)
    parser.add_argument("--max-pause-s", type=float, default=5.0,
                        help="[engine] boot_yield_max_pause_s (0: the replacement standby boots beside the "
                             "promoted worker at full speed)")
    parser.add_argument("--models", default=str(Path(tempfile.gettempdir()) / "ishowttsd-models"))
    parser.add_argument("--out")
    args = parser.parse_args(argv)
    Path(args.models).mkdir(parents=True, exist_ok=True)
    result = run(Path(args.models), args.rounds, args.compile, args.poll_ms / 1000, args.max_pause_s)
    result["command"] = " ".join(sys.argv)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
