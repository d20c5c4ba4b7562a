"""Disk full in the state and log directories (a small tmpfs), with the real daemon.

The tmpfs is mounted inside a private mount namespace (`unshare -m`) that only the daemon and its
worker live in: nothing is mounted on the host, and the mount vanishes with the daemon whatever
happens. The test reaches the files through /proc/PID/root.
"""

from __future__ import annotations

import errno
import io
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile
from fuzz_strategies import multipart
from reliability_support import (
    TINY_TEXT,
    DaemonProcess,
    Reply,
    request,
    scan_tree,
    stop_quietly,
    tts,
    wait_for,
    write_config,
)

TMPFS_SIZE = "8m"
pytestmark = pytest.mark.slow


@dataclass
class NamespacedDaemon(DaemonProcess):
    """The daemon with a fresh tmpfs at `var` that only its mount namespace sees."""

    var: Path = Path("/nonexistent")
    models: Path = Path("/nonexistent")

    def start(self) -> NamespacedDaemon:
        setup = (f"mount -t tmpfs -o size={TMPFS_SIZE},mode=0755 tmpfs {self.var} && mkdir {self.var}/state "
                 f"{self.var}/log && ln -s {self.models} {self.var}/state/models && exec "
                 + shlex.join([sys.executable, "-m", "ishowttsd", "--config", str(self.config)]))
        self.env = {**self.env, "PYTHONUNBUFFERED": "1"}
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sh", "-c", setup],
                                        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **self.env})
        return self

    def inside(self, path: Path) -> Path:
        """`path` as the daemon sees it (its mount namespace)."""
        assert self.process is not None
        return Path(f"/proc/{self.process.pid}/root") / path.relative_to("/")


class NotifyListener:
    """A datagram socket standing in for systemd's NOTIFY_SOCKET; keeps every STATUS= seen."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.setblocking(False)
        self.statuses: list[str] = []

    def drain(self) -> list[str]:
        while True:
            try:
                message = self.sock.recv(65536).decode()
            except BlockingIOError:
                return self.statuses
            self.statuses += [line[7:] for line in message.split("\n") if line.startswith("STATUS=")]


def boot(directory: Path, models_dir: Path, fill_first: bool = False) -> tuple[NamespacedDaemon, NotifyListener]:
    var = directory / "var"
    var.mkdir()
    notify = NotifyListener(directory / "notify.sock")
    config = write_config(directory, models_dir,
                          daemon={"state_dir": str(var / "state"), "log_dir": str(var / "log")},
                          jobs={"enabled": True, "sample_interval_s": 1},
                          gpu={"backend": "none", "lock_clocks": False})
    daemon = NamespacedDaemon(config, str(directory / "ishowttsd.sock"), directory / "daemon.log",
                              {"NOTIFY_SOCKET": str(notify.path)}, var=var, models=models_dir)
    daemon.start()
    if fill_first:
        wait_for(lambda: daemon.inside(var / "state" / "models").exists(), 30, "the tmpfs")
        fill(daemon.inside(var))
    try:
        daemon.wait_ready()
    except BaseException:
        stop_quietly(daemon)
        raise
    return daemon, notify


def fill(directory: Path) -> int:
    """Write `directory/filler` until the filesystem refuses; the bytes written."""
    written = 0
    with open(directory / "filler", "ab", buffering=0) as filler:
        for size in (1 << 20, 1 << 16, 1 << 12, 1):
            try:
                while True:
                    written += filler.write(b"\0" * size)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
    return written


def tone_wav(seconds: float = 3.0, rate: int = 24000) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    buffer = io.BytesIO()
    soundfile.write(buffer, 0.3 * np.sin(2 * np.pi * 220 * t), rate, format="WAV")
    return buffer.getvalue()


def upload(daemon: DaemonProcess, name: str) -> Reply:
    body, content_type = multipart([("name", name.encode(), None), ("text", b"Hello, this is my voice.", None),
                                    ("audio", tone_wav(), "ref.wav")])
    return request(daemon.socket, "POST", "/v1/voices", body, {"Content-Type": content_type})


@dataclass
class FullDisk:
    daemon: NamespacedDaemon
    notify: NotifyListener
    filled_bytes: int

    @property
    def var(self) -> Path:
        return self.daemon.inside(self.daemon.var)

    @property
    def voices(self) -> Path:
        return self.var / "state" / "voices"


@pytest.fixture(scope="module")
def full_disk(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> Iterator[FullDisk]:
    daemon, notify = boot(tmp_path_factory.mktemp("diskfull"), models_dir)
    try:
        var = daemon.inside(daemon.var)
        wait_for(lambda: list((var / "state" / "config-backups").glob("*-boot.json")), 60, "the boot backup")
        history = var / "log" / "memory_history.jsonl"  # a file with a part-filled last page when the disk fills
        wait_for(lambda: history.exists() and history.stat().st_size % 4096, 60, "the sampler's first lines")
        yield FullDisk(daemon, notify, fill(daemon.inside(daemon.var)))
    finally:
        daemon.stop()
        notify.sock.close()


def test_synthesis_keeps_working_on_a_full_disk(full_disk: FullDisk) -> None:
    started = time.monotonic()
    replies = [tts(full_disk.daemon.socket, TINY_TEXT) for _ in range(5)]
    print(f"\nFIGURE disk full: tmpfs {TMPFS_SIZE} filled with {full_disk.filled_bytes} bytes; 5 syntheses: "
          f"{[r.status for r in replies]} in {time.monotonic() - started:.2f}s")
    assert [r.status for r in replies] == [200] * 5
    assert request(full_disk.daemon.socket, "GET", "/readyz").status == 200


def test_a_voice_upload_on_a_full_disk_leaves_nothing_behind(full_disk: FullDisk) -> None:
    before = sorted(p.name for p in full_disk.voices.iterdir())
    reply = upload(full_disk.daemon, "fulldisk")
    assert reply.status >= 400, "the upload cannot have been stored on a full disk"
    assert sorted(p.name for p in full_disk.voices.iterdir()) == before
    assert request(full_disk.daemon.socket, "GET", "/v1/voices/fulldisk").status == 404


def test_a_voice_upload_on_a_full_disk_gets_a_clear_507(full_disk: FullDisk) -> None:
    reply = upload(full_disk.daemon, "fulldisk")
    print(f"\nFIGURE disk full upload: {reply.status} {reply.body[:200]!r}")
    assert reply.status in (503, 507), reply.body
    message = reply.json()["error"]["message"].lower()
    assert "full" in message or "space" in message, message


def test_reload_and_jobs_on_a_full_disk_do_not_stop_the_daemon(full_disk: FullDisk) -> None:
    daemon = full_disk.daemon
    before = daemon.status().get("reload", {}).get("at")
    daemon.signal(signal.SIGHUP)
    time.sleep(1.0)
    job = request(daemon.socket, "POST", "/v1/jobs/sampler/run", {}, timeout=60)
    wait_for(lambda: daemon.status().get("reload", {}).get("at") != before, 30, "the reload to finish")
    assert daemon.process is not None and daemon.process.poll() is None, daemon.log()[-2000:]
    print(f"\nFIGURE disk full reload: {daemon.status()['reload']}; sampler job run: {job.status}")
    assert job.status < 500, job.body
    assert tts(daemon.socket).status == 200


SAMPLER_RUNS = 40  # each appends a line to log/memory_history.jsonl: enough to cross a page boundary


def test_no_half_written_or_temporary_file_on_a_full_disk(full_disk: FullDisk) -> None:
    runs = [request(full_disk.daemon.socket, "POST", "/v1/jobs/sampler/run", {}, timeout=60).status
            for _ in range(SAMPLER_RUNS)]
    assert max(runs) < 500, runs
    problems = scan_tree(full_disk.var, skip=lambda p: p.name == "filler")
    assert not problems, "\n".join(problems)


def test_status_and_status_line_say_the_disk_is_full(full_disk: FullDisk) -> None:
    upload(full_disk.daemon, "fulldisk")  # a write that fails, if nothing else failed yet
    storage = full_disk.daemon.status().get("storage")
    time.sleep(6.0)  # the supervisor sends STATUS= every 5 s
    lines = full_disk.notify.drain()
    print(f"\nFIGURE disk full status: /v1/status storage={storage}; STATUS={lines[-1:] if lines else None}")
    assert storage and "disk full" in storage[0]["problem"], storage
    assert any("disk full" in line for line in lines[-2:]), lines[-5:]


def test_freeing_space_lets_uploads_work_again(full_disk: FullDisk) -> None:
    (full_disk.var / "filler").unlink()
    reply = upload(full_disk.daemon, "afterfull")
    assert reply.status == 201, reply.body
    assert request(full_disk.daemon.socket, "DELETE", "/v1/voices/afterfull").status == 200
    assert not scan_tree(full_disk.var)


def test_the_daemon_boots_on_a_full_disk(tmp_path: Path, models_dir: Path) -> None:
    daemon, notify = boot(tmp_path, models_dir, fill_first=True)
    try:
        assert tts(daemon.socket).status == 200
        assert not scan_tree(daemon.inside(daemon.var), skip=lambda p: p.name == "filler")
    finally:
        daemon.stop()
        notify.sock.close()
