"""sd_notify for a Type=notify service: READY, STATUS, WATCHDOG, RELOADING, STOPPING, EXTEND_TIMEOUT.

A thin, thread-safe wrapper around the `sdnotify` package. Without NOTIFY_SOCKET (not started by
systemd, or in tests) every call is a no-op that returns False. Messages are sent as UTF-8
(sdnotify itself would encode Latin-1 and silently drop anything else), values cannot inject
extra assignments (newlines are flattened), and a send that fails because systemd re-created its
socket (daemon-reexec) reconnects once.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Mapping

import sdnotify

__all__ = ["Notifier", "watchdog_interval_from"]
# A receiver whose queue is full (a stuck systemd; a test that reads late) must not freeze the
# sender: a message that cannot be queued within this long is dropped (the send returns False).
SEND_TIMEOUT_S = 2.0


def watchdog_interval_from(environ: Mapping[str, str], pid: int) -> float | None:
    """Seconds between watchdog pings (half of WATCHDOG_USEC), or None when none are wanted.

    None when WATCHDOG_USEC is missing, not a positive integer, or WATCHDOG_PID names another
    process (the variables were inherited, not meant for us).
    """
    usec = environ.get("WATCHDOG_USEC", "")
    target_pid = environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if target_pid and target_pid != str(pid):
        return None
    return int(usec) / 2 / 1_000_000


def _one_line(text: str) -> str:
    return " ".join(text.splitlines())


def _monotonic_usec() -> int:
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


class Notifier:
    """Sends sd_notify messages for this process; safe to call from any thread."""

    def __init__(self) -> None:
        self._address = os.environ.get("NOTIFY_SOCKET", "")
        self._environ = {key: os.environ.get(key, "") for key in ("WATCHDOG_USEC", "WATCHDOG_PID")}
        self._lock = threading.Lock()
        self._notifier: sdnotify.SystemdNotifier | None = None
        if self._address:  # connect now, while NOTIFY_SOCKET is surely still in the environment
            self._try_connect()

    @property
    def enabled(self) -> bool:
        """True when systemd asked for notifications (NOTIFY_SOCKET was set at construction)."""
        return bool(self._address)

    def ready(self, status: str = "") -> bool:
        return self._send("READY=1", status=status)

    def status(self, text: str) -> bool:
        return self._send(f"STATUS={_one_line(text)}")

    def extend_timeout(self, seconds: float) -> bool:
        """Ask for `seconds` more before the start/stop/reload timeout fires (EXTEND_TIMEOUT_USEC)."""
        if not seconds > 0:
            raise ValueError(f"seconds must be > 0, got {seconds}")
        return self._send(f"EXTEND_TIMEOUT_USEC={round(seconds * 1_000_000)}")

    def watchdog(self) -> bool:
        return self._send("WATCHDOG=1")

    def watchdog_trigger(self) -> bool:
        """Tell systemd the service is broken now: it acts as on a watchdog timeout."""
        return self._send("WATCHDOG=trigger")

    def reloading(self) -> bool:
        return self._send("RELOADING=1", f"MONOTONIC_USEC={_monotonic_usec()}")

    def stopping(self, status: str = "") -> bool:
        return self._send("STOPPING=1", status=status)

    def errno(self, number: int) -> bool:
        return self._send(f"ERRNO={int(number)}")

    def watchdog_interval(self) -> float | None:
        """Half the configured WatchdogSec in seconds, or None when no watchdog applies to us."""
        return watchdog_interval_from(self._environ, os.getpid())

    def _send(self, *assignments: str, status: str = "") -> bool:
        """Send the assignments (plus STATUS= when given) as one datagram; False if not sent."""
        if not self._address:
            return False
        lines = [*assignments, f"STATUS={_one_line(status)}"] if status else list(assignments)
        state = "\n".join(lines).encode("utf-8").decode("latin-1")  # sdnotify encodes Latin-1
        with self._lock:
            return self._send_locked(state)

    def close(self) -> None:
        """Close the connection (a later message reconnects)."""
        with self._lock:
            self._drop_connection()

    def __enter__(self) -> Notifier:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _send_locked(self, state: str) -> bool:
        for _attempt in range(2):
            try:
                self._connected().notify(state)
                return True
            except TimeoutError:  # the receiver's queue stayed full: drop this message, keep the connection
                return False
            except (OSError, TypeError):  # TypeError: sdnotify found NOTIFY_SOCKET unset on reconnect
                self._drop_connection()
        return False

    def _drop_connection(self) -> None:
        if self._notifier is not None and self._notifier.socket is not None:
            self._notifier.socket.close()
        self._notifier = None

    def _try_connect(self) -> None:
        with self._lock, contextlib.suppress(OSError, TypeError):
            self._connected()

    def _connected(self) -> sdnotify.SystemdNotifier:
        """sdnotify leaks its socket when connect fails, so a missing socket file is caught first."""
        if self._notifier is None:
            if not self._address.startswith("@") and not os.path.exists(self._address):
                raise FileNotFoundError(self._address)
            self._notifier = sdnotify.SystemdNotifier(debug=True)
            self._notifier.socket.settimeout(SEND_TIMEOUT_S)
        return self._notifier
