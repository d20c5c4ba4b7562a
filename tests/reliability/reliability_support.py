"""Helpers of the reliability suite: start the real daemon, load it, watch its processes and files.

The daemon harness itself lives in tests/integration/daemon_harness.py (imported, not copied).
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import signal
import sys
import time
import wave
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))

from daemon_harness import DaemonProcess, Reply, UnixHTTPConnection, request, write_config

__all__ = ["PLAIN_LIMITS", "SERVICE_GROUP", "DaemonProcess", "LoadResult", "Reply", "TreeEntry",
           "UnixHTTPConnection", "request", "run_load", "scan_tree", "snapshot_tree", "start_daemon",
           "stop_quietly", "tts", "wait_for", "worker_pid", "write_config"]

TINY_TEXT = "Hi there."
SERVICE_GROUP = "daemon"  # the shared daemon's socket group: any group uid 65534 is not in (Debian has it)
# The shared daemon's limits keep hostile cases cheap: short texts, a 1 MiB upload limit.
PLAIN_LIMITS = {"max_text_chars": 60, "max_upload_bytes": 1024 * 1024, "request_timeout_s": 60.0}
FAST = {"nfe": 2}


def start_daemon(directory: Path, models_dir: Path, env: dict[str, str] | None = None,
                 **sections: dict[str, object]) -> DaemonProcess:
    """The real daemon (tiny model) under `directory`, ready; `sections` override config keys."""
    config = write_config(directory, models_dir, **sections)
    socket_path = str(sections.get("daemon", {}).get("socket", directory / "ishowttsd.sock"))
    daemon = DaemonProcess(config, socket_path, directory / "daemon.log", env or {})
    try:
        daemon.start().wait_ready()
    except BaseException:
        stop_quietly(daemon)
        raise
    return daemon


def stop_quietly(daemon: DaemonProcess) -> None:
    if daemon.process is not None and daemon.process.poll() is None:
        daemon.process.send_signal(signal.SIGKILL)
        daemon.process.wait(30)


def worker_pid(daemon: DaemonProcess) -> int | None:
    pid = daemon.status()["engine"]["pid"]
    return int(pid) if pid is not None else None


def wait_for(predicate: Callable[[], Any], timeout_s: float, what: str, every_s: float = 0.1) -> Any:
    """Poll until `predicate()` is truthy; its value, or AssertionError naming `what`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every_s)
    raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")


def tts(sock: str, text: str = TINY_TEXT, timeout: float = 60.0, **fields: Any) -> Reply:
    return request(sock, "POST", "/v1/tts", {"text": text, **FAST, **fields}, timeout=timeout)


# ---- load ---------------------------------------------------------------------------------------
@dataclass
class Outcome:
    status: int  # 0 = transport error (connection refused/reset, client timeout)
    seconds: float
    retry_after: str | None = None
    code: str = ""
    error: str = ""


@dataclass
class LoadResult:
    outcomes: list[Outcome] = field(default_factory=list)

    def count(self, status: int) -> int:
        return sum(1 for o in self.outcomes if o.status == status)

    def by_status(self) -> dict[int, int]:
        counts: dict[int, int] = {}
        for outcome in self.outcomes:
            counts[outcome.status] = counts.get(outcome.status, 0) + 1
        return dict(sorted(counts.items()))

    @property
    def slowest_s(self) -> float:
        return max((o.seconds for o in self.outcomes), default=0.0)


def one_request(sock: str, body: dict[str, Any], timeout_s: float) -> Outcome:
    started = time.monotonic()
    try:
        reply = request(sock, "POST", "/v1/tts", body, timeout=timeout_s)
    except OSError as exc:
        return Outcome(0, time.monotonic() - started, error=f"{type(exc).__name__}: {exc}")
    code = reply.json()["error"]["code"] if reply.status >= 400 else ""
    return Outcome(reply.status, time.monotonic() - started, reply.headers.get("retry-after"), code)


def run_load(sock: str, total: int, concurrency: int, body: dict[str, Any], timeout_s: float,
             on_done: Callable[[int], None] = lambda n: None) -> LoadResult:
    """`total` POST /v1/tts at `concurrency`; `on_done(n)` after each answer (n answers so far)."""
    result = LoadResult()
    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        futures = [pool.submit(one_request, sock, body, timeout_s) for _ in range(total)]
        for future in concurrent.futures.as_completed(futures):
            result.outcomes.append(future.result())
            on_done(len(result.outcomes))
    return result


# ---- files --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TreeEntry:
    size: int
    mtime_ns: int
    kind: str


def snapshot_tree(root: Path, skip: Callable[[Path], bool] = lambda p: False) -> dict[str, TreeEntry]:
    """Every path under `root` (symlinks not followed) → size, mtime, kind."""
    entries: dict[str, TreeEntry] = {}
    for path in _walk(root):
        if skip(path):
            continue
        info = path.lstat()
        kind = "link" if path.is_symlink() else "dir" if path.is_dir() else "file"
        entries[str(path.relative_to(root))] = TreeEntry(info.st_size if kind == "file" else 0,
                                                         info.st_mtime_ns if kind == "file" else 0, kind)
    return entries


def _walk(root: Path) -> Iterator[Path]:
    for directory, dirs, files in os.walk(root):
        base = Path(directory)
        yield from (base / name for name in dirs + files)


TEMP_MARKERS = (".tmp", ".staging-", ".replaced-", ".removed-", ".partial", "~")


def _is_temp(path: Path) -> bool:
    return any(marker in path.name for marker in TEMP_MARKERS)


def _wav_problem(path: Path) -> str:
    try:
        with wave.open(str(path), "rb") as reader:
            frames = reader.getnframes()
            data = reader.readframes(frames)
        expected = frames * reader.getsampwidth() * reader.getnchannels()
        return "" if frames > 0 and len(data) == expected else f"{len(data)} of {expected} bytes"
    except (wave.Error, EOFError) as exc:
        return str(exc)


def _json_problem(path: Path) -> str:
    try:
        json.loads(path.read_text(encoding="utf-8"))
        return ""
    except (ValueError, UnicodeDecodeError) as exc:
        return str(exc)


def _jsonl_problem(path: Path) -> str:
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        try:
            json.loads(line)
        except ValueError as exc:
            return f"line {number}: {exc}"
    return ""


CHECKS: dict[str, Callable[[Path], str]] = {".wav": _wav_problem, ".json": _json_problem,
                                            ".jsonl": _jsonl_problem}


def scan_tree(root: Path, skip: Callable[[Path], bool] = lambda p: False) -> list[str]:
    """Half-written or leftover files under `root`: temp files, JSON that does not parse, WAVs that
    do not decode completely. Symlinks (the shared tiny model) are not followed."""
    problems = []
    for path in _walk(root):
        if path.is_symlink() or skip(path):
            continue
        if _is_temp(path):
            problems.append(f"{path}: temporary file left behind")
        elif path.is_file() and (check := CHECKS.get(path.suffix)) and (why := check(path)):
            problems.append(f"{path}: {why}")
    return problems


# ---- processes ----------------------------------------------------------------------------------
def process_family(pid: int) -> list[psutil.Process]:
    parent = psutil.Process(pid)
    return [parent, *parent.children(recursive=True)]


def listening_inet(pid: int) -> list[tuple[str, int]]:
    """(ip, port) of every listening TCP/UDP socket of the daemon and its children."""
    found = []
    for process in process_family(pid):
        for conn in process.net_connections(kind="inet"):
            if conn.status == psutil.CONN_LISTEN or not conn.raddr:
                found.append((conn.laddr.ip, conn.laddr.port))
    return found
