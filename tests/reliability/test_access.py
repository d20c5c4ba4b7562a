"""Who may talk to the daemon: the Unix socket is 0660 with the service group (checked with real
second uids through setpriv), TCP is off by default, loopback only when on, and then token-protected."""

from __future__ import annotations

import grp
import http.client
import os
import shutil
import socket
import stat
import subprocess
import time
from pathlib import Path

import pytest
from reliability_support import SERVICE_GROUP, DaemonProcess, listening_inet, request, start_daemon, write_config

NOBODY = 65534
SYSTEM_PYTHON = "/usr/bin/python3"  # readable by every uid, unlike the test's venv under /root
CLIENT = """
import socket, sys
s = socket.socket(socket.AF_UNIX)
try:
    s.connect(sys.argv[1])
except PermissionError:
    print("EACCES"); sys.exit(0)
s.sendall(b"GET /healthz HTTP/1.0\\r\\nHost: x\\r\\n\\r\\n")
print(s.recv(64).split(b"\\r\\n")[0].decode())
"""
pytestmark = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None,
                                reason="needs root and setpriv to act as other uids")


def as_uid(sock: str, uid: int, gid: int, groups: list[int]) -> str:
    """What a client running as uid/gid with these supplementary groups gets from the socket."""
    group_args = [f"--groups={','.join(map(str, groups))}"] if groups else ["--clear-groups"]
    result = subprocess.run(["setpriv", f"--reuid={uid}", f"--regid={gid}", *group_args, "--",
                             SYSTEM_PYTHON, "-c", CLIENT, sock], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_socket_is_0660_with_the_service_group(plain_daemon: DaemonProcess) -> None:
    info = os.stat(plain_daemon.socket)
    assert stat.S_ISSOCK(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o660
    assert info.st_gid == grp.getgrnam(SERVICE_GROUP).gr_gid


def test_a_uid_outside_the_group_is_refused_and_members_are_served(plain_daemon: DaemonProcess) -> None:
    gid = grp.getgrnam(SERVICE_GROUP).gr_gid
    answers = {"outsider": as_uid(plain_daemon.socket, NOBODY, NOBODY, []),
               "supplementary member": as_uid(plain_daemon.socket, NOBODY, NOBODY, [gid]),
               "primary member": as_uid(plain_daemon.socket, NOBODY, gid, [])}
    print(f"\nFIGURE access: uid {NOBODY} on the {SERVICE_GROUP} socket: {answers}")
    assert answers["outsider"] == "EACCES"
    assert answers["supplementary member"].split()[1:2] == answers["primary member"].split()[1:2] == ["200"]


def test_no_tcp_listener_by_default(plain_daemon: DaemonProcess) -> None:
    assert plain_daemon.process is not None
    assert listening_inet(plain_daemon.process.pid) == []


# ---- TCP ----------------------------------------------------------------------------------------
TOKEN = "s3cret-token-" + "x" * 24


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def token_file(directory: Path, mode: int, text: str = TOKEN + "\n") -> Path:
    path = directory / "token"
    path.write_text(text)
    path.chmod(mode)
    return path


def tcp_get(port: int, path: str, token: str | None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", path, headers={"Authorization": f"Bearer {token}"} if token else {})
        answer = conn.getresponse()
        return answer.status, answer.read()
    finally:
        conn.close()


def test_tcp_when_enabled_is_loopback_only_and_needs_the_token(tmp_path: Path, models_dir: Path) -> None:
    port = free_port()
    daemon = start_daemon(tmp_path, models_dir, daemon={"tcp_listen": f"127.0.0.1:{port}",
                                                        "tcp_token_file": str(token_file(tmp_path, 0o600))})
    try:
        assert daemon.process is not None
        assert listening_inet(daemon.process.pid) == [("127.0.0.1", port)]
        answers = {"none": tcp_get(port, "/v1/status", None)[0], "wrong": tcp_get(port, "/v1/status", "nope")[0],
                   "right": tcp_get(port, "/v1/status", TOKEN)[0],
                   "unix, no token": request(daemon.socket, "GET", "/v1/status").status}
        print(f"\nFIGURE tcp: {answers}")
        assert answers == {"none": 401, "wrong": 401, "right": 200, "unix, no token": 200}
    finally:
        daemon.stop()


def exits_with_config_error(tmp_path: Path, models_dir: Path, **daemon_keys: object) -> str:
    """Start a daemon that must refuse to start before it binds anything: its log, once it exited with 2."""
    config = write_config(tmp_path, models_dir, daemon=daemon_keys)
    daemon = DaemonProcess(config, str(tmp_path / "ishowttsd.sock"), tmp_path / "daemon.log").start()
    assert daemon.process is not None
    try:
        deadline = time.monotonic() + 120
        while daemon.process.poll() is None and time.monotonic() < deadline:
            assert not Path(daemon.socket).exists(), "the daemon opened its socket despite the bad TCP settings"
            time.sleep(0.05)
        assert daemon.process.returncode == 2, daemon.log()[-2000:]
        return daemon.log()
    finally:
        daemon.stop()


def test_a_non_loopback_tcp_address_is_refused_at_start(tmp_path: Path, models_dir: Path) -> None:
    log = exits_with_config_error(tmp_path, models_dir, tcp_listen=f"0.0.0.0:{free_port()}",
                                  tcp_token_file=str(token_file(tmp_path, 0o600)))
    assert "tcp_listen" in log and "loopback" in log


@pytest.mark.parametrize(("mode", "text", "words"), [(0o644, TOKEN, "other users"), (0o600, "\n", "empty"),
                                                     (None, "", "cannot read")])
def test_an_unsafe_or_missing_token_file_is_refused_at_start(tmp_path: Path, models_dir: Path, mode: int | None,
                                                             text: str, words: str) -> None:
    path = token_file(tmp_path, mode, text) if mode is not None else tmp_path / "missing-token"
    log = exits_with_config_error(tmp_path, models_dir, tcp_listen=f"127.0.0.1:{free_port()}",
                                  tcp_token_file=str(path))
    assert "tcp_token_file" in log and words in log, log[-2000:]
