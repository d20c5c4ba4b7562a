"""Start the real ishowttsd as a subprocess on a temp Unix socket with the tiny model, and talk to it."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BOOT_TIMEOUT_S = 180.0


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float = 60.0) -> None:
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.unix_path)


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def request(sock: str, method: str, path: str, body: bytes | dict[str, Any] | None = None,
            headers: dict[str, str] | None = None, timeout: float = 60.0) -> Reply:
    headers = dict(headers or {})
    if isinstance(body, dict):
        body = json.dumps(body).encode()
        headers.setdefault("Content-Type", "application/json")
    conn = UnixHTTPConnection(sock, timeout)
    try:
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
    finally:
        conn.close()


def write_config(directory: Path, models_dir: Path, **sections: dict[str, Any]) -> Path:
    """A config for a test daemon under `directory`; `sections` override/add keys per section."""
    base: dict[str, dict[str, Any]] = {
        "daemon": {"socket": str(directory / "ishowttsd.sock"), "state_dir": str(directory / "state"),
                   "log_dir": str(directory / "log")},
        "engine": {"model": "tiny", "ping_interval_s": 0.5},
        "jobs": {"enabled": False},
        "logging": {"format": "json", "level": "debug"},
    }
    for name, keys in sections.items():
        base.setdefault(name, {}).update(keys)
    (directory / "state").mkdir(parents=True, exist_ok=True)
    link = directory / "state" / "models"
    if not link.exists():
        link.symlink_to(models_dir)  # share the built tiny model between test daemons
    lines = []
    for name, keys in base.items():
        lines.append(f"[{name}]")
        lines.extend(f"{key} = {json.dumps(value)}" for key, value in keys.items())
    path = directory / "ishowttsd.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


@dataclass
class DaemonProcess:
    config: Path
    socket: str
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> DaemonProcess:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env}
        env.pop("NOTIFY_SOCKET", None) if "NOTIFY_SOCKET" not in self.env else None
        log = self.log_path.open("ab")
        self.process = subprocess.Popen([sys.executable, "-m", "ishowttsd", "--config", str(self.config)],
                                        stdout=log, stderr=subprocess.STDOUT, env=env)
        return self

    def wait_ready(self, timeout_s: float = BOOT_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"daemon exited {self.process.returncode}:\n{self.log()[-3000:]}")
            try:
                if request(self.socket, "GET", "/readyz", timeout=5).status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"daemon not ready in {timeout_s}s:\n{self.log()[-3000:]}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def status(self) -> dict[str, Any]:
        return request(self.socket, "GET", "/v1/status").json()

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def kill(self) -> None:
        """SIGKILL the daemon and reap it (its fork server and workers exit when its pipes close)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self, timeout_s: float = 60.0) -> int:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise


def start_daemon(directory: Path, models_dir: Path, env: dict[str, str] | None = None,
                 **sections: dict[str, Any]) -> DaemonProcess:
    """Start a real daemon with the tiny model under `directory` and wait until /readyz answers."""
    config = write_config(directory, models_dir, **sections)
    daemon = DaemonProcess(config, str(directory / "ishowttsd.sock"), directory / "daemon.log", env or {})
    try:
        daemon.start().wait_ready()
    except BaseException:  # a daemon that never got ready must not outlive its test (and load the box)
        daemon.kill()
        raise
    return daemon
