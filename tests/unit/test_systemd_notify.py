"""Tests for ishowttsd.systemd.Notifier against real AF_UNIX datagram sockets (path and abstract)."""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ishowttsd import systemd
from ishowttsd.systemd import Notifier, watchdog_interval_from


class NotifySocket:
    """A datagram socket standing in for systemd's notify socket."""

    def __init__(self, address: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.sock.settimeout(2.0)
        self.closing: list[Notifier] = []

    def receive(self) -> str:
        return self.sock.recv(65536).decode("utf-8")

    def pending(self) -> bool:
        self.sock.setblocking(False)
        try:
            self.sock.recv(65536)
            return True
        except BlockingIOError:
            return False
        finally:
            self.sock.settimeout(2.0)


@pytest.fixture
def notify_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[NotifySocket]:
    path = tmp_path / "notify.sock"
    receiver = NotifySocket(str(path))
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    yield receiver
    for notifier in receiver.closing:
        notifier.close()
    receiver.sock.close()


def test_without_notify_socket_everything_is_a_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    with Notifier() as notifier:
        assert not notifier.enabled
        sent = [notifier.ready("up"), notifier.status("x"), notifier.watchdog(), notifier.reloading(),
                notifier.stopping(), notifier.errno(5), notifier.extend_timeout(3)]
    assert sent == [False] * 7


def test_ready_with_status(notify_socket: NotifySocket) -> None:
    with Notifier() as notifier:
        assert notifier.enabled
        assert notifier.ready("serving on /run/ishowttsd/ishowttsd.sock")
        assert notify_socket.receive() == "READY=1\nSTATUS=serving on /run/ishowttsd/ishowttsd.sock"
        assert notifier.ready()
        assert notify_socket.receive() == "READY=1"


def test_each_message_form(notify_socket: NotifySocket) -> None:
    notifier = Notifier()
    notify_socket.closing.append(notifier)
    calls = [
        (lambda: notifier.status("warming 3/8"), "STATUS=warming 3/8"),
        (lambda: notifier.extend_timeout(90.5), "EXTEND_TIMEOUT_USEC=90500000"),
        (notifier.watchdog, "WATCHDOG=1"),
        (notifier.watchdog_trigger, "WATCHDOG=trigger"),
        (lambda: notifier.stopping("draining 2 requests"), "STOPPING=1\nSTATUS=draining 2 requests"),
        (lambda: notifier.errno(12), "ERRNO=12"),
    ]
    for call, expected in calls:
        assert call()
        assert notify_socket.receive() == expected


def test_reloading_carries_current_monotonic_usec(notify_socket: NotifySocket) -> None:
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    with Notifier() as notifier:
        assert notifier.reloading()
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    first, second = notify_socket.receive().split("\n")
    assert first == "RELOADING=1"
    name, value = second.split("=")
    assert name == "MONOTONIC_USEC" and before <= int(value) <= after


def test_status_is_utf8_and_cannot_inject_assignments(notify_socket: NotifySocket) -> None:
    with Notifier() as notifier:
        assert notifier.status("voice “Zoë” 你好\nREADY=1")
    assert notify_socket.receive() == "STATUS=voice “Zoë” 你好 READY=1"


def test_extend_timeout_rejects_non_positive(notify_socket: NotifySocket) -> None:
    with Notifier() as notifier, pytest.raises(ValueError):
        notifier.extend_timeout(0)
    assert not notify_socket.pending()


def test_abstract_socket_address(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"ishowttsd-test-{uuid.uuid4().hex}"
    receiver = NotifySocket("\0" + name)
    monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
    try:
        with Notifier() as notifier:
            assert notifier.ready("abstract")
        assert receiver.receive() == "READY=1\nSTATUS=abstract"
    finally:
        receiver.sock.close()


def test_missing_socket_returns_false_then_recovers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "later.sock"
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    with Notifier() as notifier:
        assert notifier.enabled and not notifier.watchdog()
        receiver = NotifySocket(str(path))
        try:
            assert notifier.watchdog()
            assert receiver.receive() == "WATCHDOG=1"
        finally:
            receiver.sock.close()


def test_reconnects_after_the_socket_is_recreated(notify_socket: NotifySocket, tmp_path: Path) -> None:
    notifier = Notifier()
    notify_socket.closing.append(notifier)
    assert notifier.watchdog()
    notify_socket.receive()
    notify_socket.sock.close()
    (tmp_path / "notify.sock").unlink()
    fresh = NotifySocket(str(tmp_path / "notify.sock"))
    try:
        assert notifier.status("after re-exec")
        assert fresh.receive() == "STATUS=after re-exec"
    finally:
        fresh.sock.close()


def test_concurrent_senders_deliver_every_message_whole(notify_socket: NotifySocket) -> None:
    notifier = Notifier()
    notify_socket.closing.append(notifier)
    notify_socket.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)

    def send(worker: int) -> None:
        for n in range(50):
            notifier.status(f"w{worker}-{n}")

    threads = [threading.Thread(target=send, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    received = {notify_socket.receive() for _ in range(200)}
    for thread in threads:
        thread.join()
    assert received == {f"STATUS=w{w}-{n}" for w in range(4) for n in range(50)}


@pytest.mark.parametrize(("environ", "expected"), [
    ({}, None),
    ({"WATCHDOG_USEC": "30000000"}, 15.0),
    ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "4242"}, 15.0),
    ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "4243"}, None),
    ({"WATCHDOG_USEC": "0"}, None),
    ({"WATCHDOG_USEC": "soon"}, None),
    ({"WATCHDOG_USEC": "-5"}, None),
])
def test_watchdog_interval_from(environ: dict[str, str], expected: float | None) -> None:
    assert watchdog_interval_from(environ, 4242) == expected


def test_watchdog_interval_reads_environment_at_construction(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "4000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    with Notifier() as notifier:
        monkeypatch.delenv("WATCHDOG_USEC")
        assert notifier.watchdog_interval() == 2.0
    monkeypatch.setenv("WATCHDOG_USEC", "4000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))
    with Notifier() as other:
        assert other.watchdog_interval() is None


def test_a_receiver_that_never_reads_cannot_freeze_the_sender(notify_socket: NotifySocket) -> None:
    notifier = Notifier()
    notify_socket.closing.append(notifier)
    sent = []
    for n in range(unread_datagrams_queued() + 64):  # more than the receiver's queue holds
        started = time.monotonic()
        sent.append(notifier.status(f"stage {n}"))
        if not sent[-1]:
            break
    assert sent[-1] is False and all(sent[:-1])  # the first message that found the queue full was dropped
    assert time.monotonic() - started < systemd.SEND_TIMEOUT_S + 2  # after waiting no longer than that
    assert notify_socket.receive() == "STATUS=stage 0"  # what was queued is intact
    while notify_socket.pending():
        pass
    assert notifier.status("after the reader caught up") is True


def unread_datagrams_queued() -> int:
    """net.unix.max_dgram_qlen: 10 by default, 512 once a systemd (the system tests') has booted on the box."""
    try:
        return int(Path("/proc/sys/net/unix/max_dgram_qlen").read_text())
    except (OSError, ValueError):
        return 1024
