"""The operator's load tools run for real against a real daemon (tiny model, NFE 1, temp socket).

`scripts/load_test.py` (R30), `scripts/soak.py` (R31) and `ishowttsctl bench --profile` (R18) run as
subprocesses, the way an operator runs them, against one daemon shared by this module; each with
the smallest bounded settings it takes. What is asserted is what they print and write: the report's
percentiles and error counts, counts that add up to what was asked, the time bound, the trace file,
and a clear message with a non-zero exit for a bad argument or a daemon that is not there.
The tests that need the daemon are marked slow; the argument and unreachable-socket ones are not.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from daemon_harness import DaemonProcess, start_daemon

REPO = Path(__file__).resolve().parents[2]
LOAD_TEST, SOAK = "scripts/load_test.py", "scripts/soak.py"
CTL = str(Path(sys.executable).with_name("ishowttsctl"))
TEXT = "Hi chat."  # short: each request is one small batch on the tiny model
LEVELS = (1, 2, 4, 8)
PER_LEVEL = 8  # at concurrency 8, eight requests at once
RUN_TIMEOUT_S = 180


@pytest.fixture(scope="module")
def tools_daemon(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> Iterator[DaemonProcess]:
    daemon = start_daemon(tmp_path_factory.mktemp("tools-daemon"), models_dir, engine={"nfe": 1})
    yield daemon
    assert daemon.stop() == 0, daemon.log()[-3000:]


def run(*argv: str, timeout: float = RUN_TIMEOUT_S) -> tuple[subprocess.CompletedProcess[str], float]:
    """Run a tool from the checkout; (its result, its wall time in seconds)."""
    started = time.monotonic()
    done = subprocess.run(list(argv), cwd=REPO, capture_output=True, text=True, timeout=timeout)
    return done, time.monotonic() - started


def script(name: str, *args: str, timeout: float = RUN_TIMEOUT_S) -> tuple[subprocess.CompletedProcess[str], float]:
    return run(sys.executable, name, *args, timeout=timeout)


def table_rows(stdout: str) -> list[dict[str, str]]:
    """load_test.py's tables (a header line, then one line per level) as dicts, header names as keys."""
    rows, header = [], None
    for line in stdout.splitlines():
        cells = line.split()
        if cells[:1] == ["concurrency"]:
            header = cells
        elif header and len(cells) == len(header):
            rows.append(dict(zip(header, cells, strict=True)))
    return rows


def jobs_finished(daemon: DaemonProcess) -> int:
    return int(daemon.status()["engine"]["jobs_finished"])


def assert_ordered_summary(summary: dict[str, Any], n: int) -> None:
    assert summary["n"] == n, summary
    assert 0 < summary["min"] <= summary["p50"] <= summary["p95"] <= summary["p99"] <= summary["max"], summary


@pytest.mark.slow
def test_load_test_runs_every_level_and_reports_percentiles_and_errors(tools_daemon: DaemonProcess,
                                                                        tmp_path: Path) -> None:
    out = tmp_path / "load.json"
    served_before = jobs_finished(tools_daemon)
    done, _ = script(LOAD_TEST, "--socket", tools_daemon.socket, "--concurrency", *map(str, LEVELS),
                     "--requests", str(PER_LEVEL), "--max-seconds", "120", "--text", TEXT, "--json", str(out))
    assert done.returncode == 0, done.stdout + done.stderr

    rows = json.loads(out.read_text())["rows"]
    assert [row["concurrency"] for row in rows] == list(LEVELS)
    for row in rows:
        assert (row["requests"], row["ok"], row["errors"]) == (PER_LEVEL, PER_LEVEL, {}), row
        assert_ordered_summary(row["latency_s"], PER_LEVEL)
        assert_ordered_summary(row["ttfa_s"], PER_LEVEL)
        assert_ordered_summary(row["rtf"], PER_LEVEL)
        assert row["ttfa_s"]["p50"] <= row["latency_s"]["p50"] and row["throughput"] > 0, row
        assert row["wall_s"] >= row["latency_s"]["max"], row
    # every request really reached the engine (the canary adds its own jobs on top)
    assert jobs_finished(tools_daemon) - served_before >= len(LEVELS) * PER_LEVEL

    printed = table_rows(done.stdout)
    assert [int(row["concurrency"]) for row in printed] == list(LEVELS), done.stdout
    for row, kept in zip(printed, rows, strict=True):
        assert {"p50", "p95", "p99", "errors"} <= row.keys(), done.stdout
        assert (int(row["requests"]), int(row["ok"]), int(row["errors"])) == (PER_LEVEL, PER_LEVEL, 0), done.stdout
        assert float(row["p99"]) == pytest.approx(kept["latency_s"]["p99"], rel=1e-3, abs=1e-4), done.stdout


@pytest.mark.slow
def test_load_test_starts_no_request_after_max_seconds(tools_daemon: DaemonProcess, tmp_path: Path) -> None:
    out, bound_s = tmp_path / "load.json", 1.0
    done, wall_s = script(LOAD_TEST, "--socket", tools_daemon.socket, "--concurrency", "2", "--requests", "100000",
                          "--max-seconds", str(bound_s), "--text", TEXT, "--json", str(out))
    assert done.returncode == 0, done.stdout + done.stderr
    (row,) = json.loads(out.read_text())["rows"]
    assert 2 <= row["requests"] < 100_000 and row["ok"] == row["requests"] and row["errors"] == {}, row
    # no request starts after the bound: the level ends once the ones in flight then are answered
    assert row["wall_s"] <= bound_s + row["latency_s"]["max"] + 0.5, row
    assert wall_s < 60, wall_s


@pytest.mark.parametrize(("name", "args", "message"), [
    (LOAD_TEST, ["--requests", "0"], "--requests must be 1..100000"),
    (LOAD_TEST, ["--max-seconds", "0"], "--max-seconds 0..86400"),
    (LOAD_TEST, ["--concurrency", "1", "0"], "--concurrency levels must be 1..1024"),
    (LOAD_TEST, ["--url", "http://192.0.2.1:8765"], "only loopback URLs are allowed"),
    (SOAK, ["--minutes", "0"], "need 0 < --minutes <= 1440"),
    (SOAK, ["--minutes", "1441"], "need 0 < --minutes <= 1440"),
    (SOAK, ["--concurrency", "0"], "1 <= --concurrency <= 1024"),
    (SOAK, ["--url", "http://192.0.2.1:8765"], "only loopback URLs are allowed"),
])
def test_a_bad_argument_is_named_and_exits_2(name: str, args: list[str], message: str) -> None:
    done, _ = script(name, *args)
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"{Path(name).name}: error: " in done.stderr and message in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and done.stdout == "", done.stderr


@pytest.mark.parametrize("name", [LOAD_TEST, SOAK])
@pytest.mark.parametrize(("kind", "reason"), [("missing", "no socket at that path"),
                                              ("stale", "connection refused")])
def test_an_unreachable_socket_is_named_and_nothing_is_sent(name: str, kind: str, reason: str,
                                                            tmp_path: Path) -> None:
    path = tmp_path / f"{kind}.sock"
    if kind == "stale":  # a socket file nothing listens on (a daemon that died without cleaning up)
        with socket.socket(socket.AF_UNIX) as stale:
            stale.bind(str(path))
    done, wall_s = script(name, "--socket", str(path), "--requests" if name == LOAD_TEST else "--max-requests", "5")
    assert done.returncode == 3, done.stdout + done.stderr
    assert f"cannot reach ishowttsd at {path}: {reason}" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and done.stdout == "", done.stdout + done.stderr
    assert wall_s < 30, wall_s


@pytest.mark.slow
def test_soak_stops_within_its_bound_and_reports_the_daemon_and_worker(tools_daemon: DaemonProcess,
                                                                        tmp_path: Path) -> None:
    out, minutes, every_s = tmp_path / "soak.json", 0.05, 0.25
    worker_pid = tools_daemon.status()["engine"]["pid"]
    # slope limits this short run cannot trip by noise: the trend verdict is a unit matter (verdict())
    done, wall_s = script(SOAK, "--socket", tools_daemon.socket, "--minutes", str(minutes), "--sample-s", str(every_s),
                          "--concurrency", "2", "--text", TEXT, "--max-rss-mib-per-hour", "1000000",
                          "--max-fds-per-hour", "1000000", "--json", str(out))
    assert done.returncode == 0, done.stdout + done.stderr
    printed, kept = json.loads(done.stdout), json.loads(out.read_text())
    assert printed == {key: kept[key] for key in printed}, (printed, kept)

    load = kept["load"]
    assert load["requests"] >= 2 and load["ok"] == load["requests"] and load["errors"] == {}, load
    assert_ordered_summary(load["latency_s"], load["requests"])
    assert load["wall_s"] <= minutes * 60 + load["latency_s"]["max"] + 1.0, load
    assert wall_s < minutes * 60 + 60, wall_s
    assert kept["problems"] == [] and kept["gaps"] == 0, kept["problems"]
    # the daemon itself (not the fork server between it and the worker) and the one worker
    assert kept["pids"] == {"daemon": [tools_daemon.process.pid], "worker": [worker_pid]}, kept["pids"]
    samples = kept["samples"]
    assert samples >= 3 and all(len(series) == samples for series in kept["series"].values()), kept
    assert kept["times_s"] == sorted(kept["times_s"]) and len(kept["times_s"]) == samples
    assert set(kept["slopes_per_hour"]) == {"daemon_rss_mib", "worker_rss_mib", "daemon_fds", "worker_fds"}
    last = kept["last"]
    assert last["worker_rss_mib"] > 50 and last["daemon_rss_mib"] > 10 and last["daemon_fds"] > 0, last


@pytest.mark.slow
def test_soak_fails_and_says_why_when_requests_fail(tools_daemon: DaemonProcess) -> None:
    done, _ = script(SOAK, "--socket", tools_daemon.socket, "--minutes", "0.5", "--max-requests", "6",
                     "--concurrency", "2", "--text", TEXT, "--nfe", "65")  # over the API's 1..64: 400
    assert done.returncode == 1, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["load"]["requests"] == 6 and report["load"]["ok"] == 0, report["load"]
    assert "failed requests: {'http_400': 6}" in report["problems"], report["problems"]


@pytest.mark.slow
def test_bench_profile_writes_a_chrome_trace_of_the_worker(tools_daemon: DaemonProcess, tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    worker_pid = tools_daemon.status()["engine"]["pid"]
    done, _ = run(CTL, "--socket", tools_daemon.socket, "--timeout", "120", "bench", "--quick", "--text", TEXT,
                  "--concurrency", "2", "--profile", "--profile-batches", "1", "--no-progress", "--json", str(out))
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(out.read_text())
    trace_path = Path(result["profile_trace"])
    assert f"profile trace: {trace_path}" in done.stdout, done.stdout
    assert trace_path.parent == tools_daemon.config.parent / "state" / "profiles" and trace_path.is_file()
    assert all(row["ok"] == row["requests"] for row in result["nfe_sweep"]), result["nfe_sweep"]

    trace = json.loads(trace_path.read_text())  # Chrome trace format: {"traceEvents": [...]}
    spans = [event for event in trace["traceEvents"] if event.get("ph") == "X"]
    assert spans, list(trace)
    assert all(isinstance(e["ts"], float | int) and e["dur"] >= 0 and e["name"] for e in spans), spans[:3]
    ops = [event for event in spans if event.get("cat") == "cpu_op"]  # the rest: the profiler's own span
    names = {event["name"] for event in ops}
    assert "aten::linear" in names, sorted(names)[:40]  # the model's layers ran under the profiler
    assert {event["pid"] for event in ops} == {worker_pid}  # recorded in the engine worker
