"""The scheduled benchmark and quality jobs end to end in a real daemon (tiny model, temp socket).

What an operator relies on after `ishowttsctl jobs run benchmark|quality` (R10, R12, R17, R21, R23):
one well-formed history line per run, a real PNG plot, a regression against the job's own history
flagged, the job's last result in `ishowttsctl jobs`, and requests served while the job runs.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from daemon_harness import DaemonProcess, request, start_daemon

from ishowttsd.ctl.cli import main as ctl_main
from ishowttsd.jobs.benchmark import BENCH_FIELDS

# The smallest settings the config allows: NFE 1 for the served path, jobs on, nothing on a timer
# that would fire during the test (the default times are hours away), no GPU.
JOBS = {"enabled": True, "rtf_target": 1000.0, "quality_max_mel_distance": 1000.0}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JOB_TIMEOUT_S = 540.0
FAST_PAST_RTF = 1e-5  # far faster than any CPU run: the new run must be flagged against it
PAST_RUNS = 3  # decide.regression.DEFAULT_MIN_HISTORY: fewer comparable runs are not judged


@pytest.fixture(scope="module")
def bench_daemon(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> Iterator[DaemonProcess]:
    directory = tmp_path_factory.mktemp("bench-daemon")
    daemon = start_daemon(directory, models_dir, jobs=JOBS, gpu={"backend": "none"}, engine={"nfe": 1})
    yield daemon
    daemon.stop()


def log_dir(daemon: DaemonProcess) -> Path:
    return daemon.config.parent / "log"


def history_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def past_fast_runs(engine: dict[str, Any]) -> list[dict[str, Any]]:
    """Comparable runs (same model, device, NFE, compile state) that were much faster."""
    row = {"model": engine["model"], "device": engine["device"], "nfe": 1, "compiled": bool(engine["compiled"]),
           "rtf_mean": FAST_PAST_RTF, "rtf_p95": FAST_PAST_RTF, "latency_p95_s": 0.001, "throughput": 1000.0,
           "kind": "benchmark"}
    return [{**row, "timestamp_s": 1_700_000_000.0 + day * 86_400} for day in range(PAST_RUNS)]


class Traffic:
    """Synthesis requests in a loop on another thread; records every status code."""

    def __init__(self, daemon: DaemonProcess) -> None:
        self.daemon, self.statuses, self.stop = daemon, list[int](), threading.Event()
        self.thread = threading.Thread(target=self._loop)

    def _loop(self) -> None:
        while not self.stop.is_set():
            reply = request(self.daemon.socket, "POST", "/v1/tts", {"text": "Still serving.", "seed": 3},
                            timeout=120)
            self.statuses.append(reply.status)

    def __enter__(self) -> Traffic:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(180)


def run_job(daemon: DaemonProcess, job_id: str) -> dict[str, Any]:
    reply = request(daemon.socket, "POST", f"/v1/jobs/{job_id}/run", timeout=JOB_TIMEOUT_S)
    assert reply.status == 200, reply.body[-2000:]
    return dict(reply.json()["job"])


def ctl_jobs_line(daemon: DaemonProcess, job_id: str, capsys: pytest.CaptureFixture[str]) -> str:
    capsys.readouterr()
    assert ctl_main(["--socket", daemon.socket, "jobs"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.split()[:1] == [job_id]]
    assert len(lines) == 1, lines
    return lines[0]


def test_benchmark_appends_one_row_draws_the_plot_and_flags_a_regression(
        bench_daemon: DaemonProcess, capsys: pytest.CaptureFixture[str]) -> None:
    history = log_dir(bench_daemon) / "bench_history.jsonl"
    history.parent.mkdir(parents=True, exist_ok=True)
    seeded = past_fast_runs(bench_daemon.status()["engine"])
    history.write_text("".join(json.dumps(row) + "\n" for row in seeded))

    with Traffic(bench_daemon) as traffic:
        job = run_job(bench_daemon, "benchmark")

    rows = history_lines(history)
    assert rows[:PAST_RUNS] == seeded and len(rows) == PAST_RUNS + 1
    new = rows[-1]
    assert all(new[key] is not None for key in BENCH_FIELDS) and new["kind"] == "benchmark"
    assert new["nfe"] == 1 and new["rtf_mean"] > 100 * FAST_PAST_RTF and new["regression"] is True
    assert any("worse" in message for message in new["regression_messages"])
    plot = log_dir(bench_daemon) / "bench_history.png"
    assert plot.read_bytes().startswith(PNG_MAGIC) and plot.stat().st_size > 1000
    assert job["last_status"] == "flagged" and job["last_result"].startswith("regression: nfe 1")
    assert traffic.statuses and set(traffic.statuses) == {200}, traffic.statuses
    assert "flagged" in ctl_jobs_line(bench_daemon, "benchmark", capsys)
    assert "benchmark" in json.dumps(bench_daemon.status()["jobs"])


def test_benchmark_without_a_regression_is_ok(bench_daemon: DaemonProcess) -> None:
    """Against its own (now slow) history the next run is not flagged: the flag above was earned."""
    history = log_dir(bench_daemon) / "bench_history.jsonl"
    slow = [{**row, "rtf_mean": row["rtf_mean"] * 1e6, "rtf_p95": row["rtf_p95"] * 1e6,
             "latency_p95_s": 1e6, "throughput": 1e-6} for row in past_fast_runs(bench_daemon.status()["engine"])]
    history.write_text("".join(json.dumps(row) + "\n" for row in slow))

    job = run_job(bench_daemon, "benchmark")

    assert len(history_lines(history)) == PAST_RUNS + 1
    assert job["last_status"] == "ok", job
    assert history_lines(history)[-1]["regression"] is False


def test_quality_appends_one_judged_record_and_reports_it(
        bench_daemon: DaemonProcess, capsys: pytest.CaptureFixture[str]) -> None:
    history = log_dir(bench_daemon) / "quality_history.jsonl"
    before = len(history_lines(history))

    with Traffic(bench_daemon) as traffic:
        job = run_job(bench_daemon, "quality")

    records = history_lines(history)
    assert len(records) == before + 1
    comparisons = {c["name"]: c for c in records[-1]["comparisons"]}
    assert set(comparisons) == {"nfe1_vs_nfe32", "optimised_vs_eager_fp32"}
    for comparison in comparisons.values():
        assert comparison["distance"] >= 0 and comparison["ok"] is True and comparison["threshold"] == 1000.0
    assert job["last_status"] == "ok" and "nfe1_vs_nfe32" in job["last_result"]
    assert traffic.statuses and set(traffic.statuses) == {200}, traffic.statuses
    assert "ok" in ctl_jobs_line(bench_daemon, "quality", capsys)
