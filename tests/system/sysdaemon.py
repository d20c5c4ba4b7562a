"""Talking to ishowttsd inside a test systemd instance: its config, users, and HTTP over its socket.

Requests go through curl --unix-socket run inside the instance, as root or as a given user, so the
socket's permissions are what decides who gets in.
"""

from __future__ import annotations

import json
import shlex
import subprocess
from dataclasses import dataclass
from typing import Any

from harness import SystemdInstance

SERVICE = "ishowttsd"
SOCKET = "/run/ishowttsd/ishowttsd.sock"
CONFIG = "/etc/ishowttsd/ishowttsd.toml"
SERVICE_USER = "ishowtts"
STATE_DIR = "/var/lib/ishowttsd"
GROUP_MEMBER = "ttsclient"
OUTSIDER = "outsider"
CURL_COULD_NOT_CONNECT = 7
START_TIMEOUT_S = 240.0


def daemon_config(max_text_chars: int = 2000) -> str:
    """The test configuration: tiny offline model on the CPU, fault injection on."""
    return (
        "[daemon]\nfault_injection = true\ndrain_timeout_s = 40.0\n\n"
        '[engine]\nmodel = "tiny"\ndevice = "cpu"\n\n'
        f"[limits]\nmax_text_chars = {max_text_chars}\n"
    )


def provision(sd: SystemdInstance, config_text: str) -> None:
    """Service user, a client in its group, an outsider, and the config file."""
    sd.add_system_user(SERVICE_USER, home=STATE_DIR)
    sd.add_system_user(GROUP_MEMBER, home="/nonexistent", groups=(SERVICE_USER,))
    sd.add_system_user(OUTSIDER, home="/nonexistent")
    sd.write_file(CONFIG, config_text)
    sd.run("chgrp", SERVICE_USER, "/etc/ishowttsd")  # as the package's postinst does
    sd.run("chmod", "2775", "/etc/ishowttsd")


@dataclass(frozen=True)
class Reply:
    curl_exit: int
    status: int
    body: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.body)


def request(sd: SystemdInstance, path: str, *, method: str = "GET", body: Any = None,
            user: str | None = None, timeout: float = 60.0) -> Reply:
    """An HTTP request over the daemon's socket; the body is kept as text."""
    argv = ["curl", "-sS", "--max-time", str(timeout), "--unix-socket", SOCKET, "-X", method,
            "-w", "\n%{http_code}"]
    if body is not None:
        argv += ["-H", "Content-Type: application/json", "--data-binary", json.dumps(body)]
    argv.append(f"http://localhost{path}")
    result = _run(sd, argv, user, timeout)
    text, _, code = result.stdout.rpartition("\n")
    return Reply(result.returncode, int(code or 0), text, result.stderr)


def synthesis_argv(text: str) -> list[str]:
    """curl POSTing /v1/tts; prints "STATUS CONTENT_TYPE SIZE"."""
    return ["curl", "-sS", "--max-time", "120", "--unix-socket", SOCKET, "-o", "/dev/null",
            "-w", "%{http_code} %{content_type} %{size_download}", "-H", "Content-Type: application/json",
            "--data-binary", json.dumps({"text": text}), "http://localhost/v1/tts"]


def synthesize(sd: SystemdInstance, text: str, user: str | None = None) -> tuple[int, str, int]:
    """POST /v1/tts; returns (HTTP status, content type, body size)."""
    status, content_type, size = _run(sd, synthesis_argv(text), user, 120.0).stdout.split()
    return int(status), content_type, int(size)


def ready_now(sd: SystemdInstance) -> bool:
    return request(sd, "/readyz", timeout=30).status == 200


def daemon_status(sd: SystemdInstance) -> dict[str, Any]:
    """GET /v1/status as a dict; {} when the daemon does not answer (yet)."""
    reply = request(sd, "/v1/status", timeout=30)
    return reply.json() if reply.status == 200 else {}


def socket_ls(sd: SystemdInstance) -> str:
    return sd.run("sh", "-c", f"ls -ln {shlex.quote(SOCKET)} 2>&1", check=False).stdout


def start_and_wait(sd: SystemdInstance) -> None:
    sd.systemctl("start", "--no-block", SERVICE)
    sd.wait_active(SERVICE, START_TIMEOUT_S)


def _run(sd: SystemdInstance, argv: list[str], user: str | None,
         timeout: float) -> subprocess.CompletedProcess[str]:
    if user is None:
        return sd.run(*argv, check=False, timeout=timeout + 10)
    return sd.run_as(user, *argv, check=False, timeout=timeout + 10)
