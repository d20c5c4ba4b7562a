"""logging_setup: structlog events written straight through the line handler (no LogRecord) match
what the stdlib path writes, line for line; the stdlib path stays for foreign handlers."""

from __future__ import annotations

import io
import json
import logging
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from ishowttsd.logging_setup import configure_logging, direct_line_handlers, get_logger


@pytest.fixture(autouse=True)
def restore_root(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", list(root.handlers))
    monkeypatch.setattr(root, "level", root.level)
    yield
    structlog.reset_defaults()


def configure_alone(fmt: str, level: str, stream: io.StringIO, **kwargs: Path | dict[str, str]) -> None:
    """configure_logging, then only its handler on the root logger, as in the daemon (pytest's log
    capture adds its own handlers while a test runs)."""
    root = logging.getLogger()
    before = list(root.handlers)
    configure_logging(fmt, level, stream, **kwargs)  # type: ignore[arg-type]
    root.handlers[:] = [handler for handler in root.handlers if handler not in before]


class ForeignHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def both_paths(emit: str, level: str = "info", **fields: object) -> tuple[dict[str, object], dict[str, object]]:
    """The same event through the direct path, then through stdlib (a foreign handler present)."""
    stream = io.StringIO()
    configure_alone("json", "info", stream, environ={})
    log = get_logger("ishowttsd.api.app")
    assert direct_line_handlers(logging.getLogger("ishowttsd.api.app"))
    getattr(log, level)(emit, **fields)
    foreign = ForeignHandler()
    logging.getLogger().addHandler(foreign)
    assert not direct_line_handlers(logging.getLogger("ishowttsd.api.app"))
    getattr(log, level)(emit, **fields)
    assert len(foreign.records) == 1
    logging.getLogger().removeHandler(foreign)
    direct, through_stdlib = (json.loads(line) for line in stream.getvalue().splitlines())
    return direct, through_stdlib


def without_time(record: dict[str, object]) -> dict[str, object]:
    assert str(record.pop("timestamp")).endswith("Z")
    return record


def test_the_access_line_is_the_same_on_both_paths() -> None:
    direct, through_stdlib = both_paths("request", method="POST", route="/v1/tts", status=200,
                                        duration_ms=1.5, text_chars=8)
    assert list(direct) == list(through_stdlib)  # same keys in the same order
    assert without_time(direct) == without_time(through_stdlib) == {
        "method": "POST", "route": "/v1/tts", "status": 200, "duration_ms": 1.5, "text_chars": 8,
        "event": "request", "level": "info", "logger": "ishowttsd.api.app"}


def test_exceptions_render_the_same_on_both_paths() -> None:
    try:
        raise ValueError("bad thing")
    except ValueError:
        direct, through_stdlib = both_paths("request_failed", level="exception", route="/v1/tts")
    assert without_time(direct) == without_time(through_stdlib)
    assert direct["level"] == "error" and str(direct["exception"]).endswith("ValueError: bad thing")


def test_the_direct_path_makes_no_log_record(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = io.StringIO()
    configure_alone("json", "info", stream, environ={})

    def no_records(*args: object, **kwargs: object) -> None:
        raise AssertionError("a LogRecord was made")

    monkeypatch.setattr(logging.Logger, "makeRecord", no_records)
    get_logger("x").warning("quick", n=1)
    assert json.loads(stream.getvalue())["event"] == "quick"


def test_levels_and_reconfiguration_apply_to_the_direct_path() -> None:
    first, second = io.StringIO(), io.StringIO()
    configure_alone("json", "info", first, environ={})
    log = get_logger("ishowttsd.api.app")
    log.debug("hidden")
    log.info("shown")
    configure_alone("json", "warning", second, environ={})
    log.info("hidden too")
    log.error("loud")
    assert [json.loads(line)["event"] for line in first.getvalue().splitlines()] == ["shown"]
    assert [json.loads(line)["event"] for line in second.getvalue().splitlines()] == ["loud"]


def test_the_journal_gets_the_direct_path_events(tmp_path: Path) -> None:
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(str(tmp_path / "journal.sock"))
    receiver.settimeout(2.0)
    stream = io.StringIO()
    try:
        configure_alone("journal", "info", stream, journal_socket=tmp_path / "journal.sock")
        get_logger("ishowttsd.engine").info("worker_ready", boot_s=1.5)
        payload = receiver.recv(1 << 16)
    finally:
        receiver.close()
    assert b"MESSAGE=worker_ready boot_s=1.5 logger=ishowttsd.engine\n" in payload
    assert b"PRIORITY=6\n" in payload and stream.getvalue() == ""


class BrokenStream(io.StringIO):
    def write(self, text: str) -> int:
        raise OSError("disk full")


def test_a_failing_stream_never_raises_into_the_caller(capsys: pytest.CaptureFixture[str]) -> None:
    configure_alone("json", "info", BrokenStream(), environ={})
    get_logger("x").info("lost")  # reported by logging's handleError on stderr, not raised
    assert "disk full" in capsys.readouterr().err


def test_a_logger_with_its_own_handler_takes_the_stdlib_path(monkeypatch: pytest.MonkeyPatch) -> None:
    configure_alone("json", "info", io.StringIO(), environ={})
    own = ForeignHandler()
    monkeypatch.setattr(logging.getLogger("special"), "handlers", [own])
    assert not direct_line_handlers(logging.getLogger("special"))
    get_logger("special").info("seen by its handler")
    assert [record.getMessage() for record in own.records] != [] and own.records[0].name == "special"
