"""The sd_notify protocol as systemd would see it, read from a real datagram socket the test binds."""

from __future__ import annotations

import itertools
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from daemon_harness import DaemonProcess, request, start_daemon


class NotifyListener:
    """Reads the notify socket all the time, as systemd does (its queue holds only ~10 datagrams)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.1)
        self.messages: list[tuple[float, str]] = []
        self.closed = threading.Event()
        self.reader = threading.Thread(target=self._read, name="notify-reader", daemon=True)
        self.reader.start()

    def _read(self) -> None:
        while not self.closed.is_set():
            try:
                self.messages.append((time.monotonic(), self.sock.recv(65536).decode()))
            except TimeoutError:
                continue
            except OSError:
                return

    def drain(self) -> list[str]:
        """Everything received so far, after a short pause for what is in flight."""
        time.sleep(0.2)
        return [m for _, m in list(self.messages)]

    def wait_for(self, needle: str, timeout_s: float) -> float:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for at, message in list(self.messages):
                if needle in message.split("\n"):
                    return at
            time.sleep(0.05)
        raise AssertionError(f"{needle!r} not received; got {[m for _, m in self.messages]}")

    def close(self) -> None:
        self.closed.set()
        self.reader.join(5)
        self.sock.close()


@pytest.fixture
def notify(tmp_path: Path) -> Iterator[NotifyListener]:
    listener = NotifyListener(tmp_path / "notify.sock")
    yield listener
    listener.close()


@pytest.fixture
def notified_daemon(tmp_path: Path, models_dir: Path, notify: NotifyListener) -> Iterator[DaemonProcess]:
    env = {"NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "2000000"}
    daemon = start_daemon(tmp_path / "d", models_dir, env=env, watchdog={"canary_interval_s": 1.0})
    yield daemon
    daemon.stop()


def test_ready_comes_only_once_the_engine_answers(notified_daemon: DaemonProcess, notify: NotifyListener) -> None:
    notify.wait_for("READY=1", 60)
    messages = [m for _, m in notify.messages]
    ready_index = next(i for i, m in enumerate(messages) if "READY=1" in m.split("\n"))
    before_ready = messages[:ready_index]
    assert any(m.startswith("EXTEND_TIMEOUT_USEC=") for m in before_ready)
    assert any("STATUS=loading engine" in m for m in before_ready)
    assert any("STATUS=opening socket" in m for m in before_ready)
    assert request(notified_daemon.socket, "GET", "/readyz").status == 200
    assert "serving" in messages[ready_index]  # READY=1 carries the STATUS line


def test_watchdog_is_fed_repeatedly_while_healthy(notified_daemon: DaemonProcess, notify: NotifyListener) -> None:
    notify.wait_for("READY=1", 60)
    first = len([m for m in notify.drain() if m == "WATCHDOG=1"])
    until = time.monotonic() + 3.5
    while time.monotonic() < until:  # drain continuously, so arrival times are real
        notify.drain()
    pets = [at for at, m in notify.messages if m == "WATCHDOG=1"]
    assert len(pets) - first >= 2
    assert max(b - a for a, b in itertools.pairwise(pets)) < 2.0  # within WATCHDOG_USEC


def test_sigterm_sends_stopping_drains_and_exits_zero(notified_daemon: DaemonProcess,
                                                      notify: NotifyListener) -> None:
    notify.wait_for("READY=1", 60)
    notified_daemon.signal(signal.SIGTERM)
    assert notified_daemon.process is not None
    assert notified_daemon.process.wait(60) == 0
    notify.wait_for("STOPPING=1", 2)
    assert not Path(notified_daemon.socket).exists()


def test_reload_sends_reloading_then_ready(notified_daemon: DaemonProcess, notify: NotifyListener) -> None:
    notify.wait_for("READY=1", 60)
    notify.messages.clear()
    notified_daemon.signal(signal.SIGHUP)
    reloading_at = notify.wait_for("RELOADING=1", 10)
    assert any(m.startswith("MONOTONIC_USEC=") for _, m in notify.messages
               for m in m.split("\n")), notify.messages
    ready_at = notify.wait_for("READY=1", 60)
    assert ready_at >= reloading_at


def test_without_notify_socket_the_daemon_still_runs(shared_daemon: DaemonProcess) -> None:
    assert shared_daemon.status()["engine"]["state"] == "ready"
