"""Tests for ishowttsd.logging_setup: journald native protocol on a real datagram socket, JSON, levels."""

from __future__ import annotations

import fcntl
import io
import json
import logging
import os
import socket
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from ishowttsd.logging_setup import (
    compact_line,
    configure_logging,
    get_logger,
    journal_datagram,
    journal_field_name,
    resolve_format,
)


def parse_native(payload: bytes) -> dict[str, str]:
    """Decode journald's native protocol (both the NAME=value and the binary length form)."""
    fields, position = {}, 0
    while position < len(payload):
        line_end = payload.index(b"\n", position)
        line = payload[position:line_end]
        if b"=" in line:
            name, _, value = line.partition(b"=")
            position = line_end + 1
        else:
            name, (size,) = line, struct.unpack("<Q", payload[line_end + 1:line_end + 9])
            value = payload[line_end + 9:line_end + 9 + size]
            assert payload[line_end + 9 + size:line_end + 10 + size] == b"\n"
            position = line_end + 10 + size
        fields[name.decode()] = value.decode()
    return fields


class Journal:
    """A datagram socket bound where the code under test expects journald."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(2.0)

    def raw(self) -> bytes:
        return self.sock.recv(1 << 20)

    def entry(self) -> dict[str, str]:
        return parse_native(self.raw())

    def is_empty(self) -> bool:
        self.sock.setblocking(False)
        try:
            self.sock.recv(1 << 20)
            return False
        except BlockingIOError:
            return True
        finally:
            self.sock.settimeout(2.0)


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in [h for h in root.handlers if h not in handlers]:
        root.removeHandler(handler)
        handler.close()
    root.setLevel(level)
    structlog.reset_defaults()


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    receiver = Journal(tmp_path / "journal.sock")
    yield receiver
    receiver.sock.close()


def test_journal_entry_carries_structured_fields(journal: Journal) -> None:
    stream = io.StringIO()
    assert configure_logging("journal", "info", stream, journal_socket=journal.path) == "journal"
    get_logger("ishowttsd.engine").info("worker_ready", job_id="j-17", boot_s=1.5, buckets=[1, 2])
    entry = journal.entry()
    assert entry["MESSAGE"] == "worker_ready job_id=j-17 boot_s=1.5 buckets=[1,2] logger=ishowttsd.engine"
    assert (entry["PRIORITY"], entry["SYSLOG_IDENTIFIER"]) == ("6", "ishowttsd")
    assert (entry["EVENT"], entry["JOB_ID"], entry["BOOT_S"]) == ("worker_ready", "j-17", "1.5")
    assert (entry["BUCKETS"], entry["LOGGER"]) == ("[1,2]", "ishowttsd.engine")
    assert "LEVEL" not in entry and "TIMESTAMP" not in entry
    assert stream.getvalue() == ""


@pytest.mark.parametrize(("method", "priority"), [
    ("debug", "7"), ("info", "6"), ("warning", "4"), ("error", "3"), ("critical", "2"),
])
def test_journal_priority_per_level(journal: Journal, method: str, priority: str) -> None:
    configure_logging("journal", "debug", io.StringIO(), journal_socket=journal.path)
    getattr(get_logger("t"), method)("evt")
    assert journal.entry()["PRIORITY"] == priority


def test_multi_line_values_use_the_binary_length_form(journal: Journal) -> None:
    configure_logging("journal", "info", io.StringIO(), journal_socket=journal.path)
    try:
        raise RuntimeError("worker died")
    except RuntimeError:
        get_logger("t").exception("synthesis_failed", note="line one\nline two")
    raw = journal.raw()
    assert b"NOTE\n" + struct.pack("<Q", len(b"line one\nline two")) + b"line one\nline two\n" in raw
    entry = parse_native(raw)
    assert entry["PRIORITY"] == "3"
    assert entry["EXCEPTION"].startswith("Traceback (most recent call last):")
    assert entry["EXCEPTION"].endswith("RuntimeError: worker died")
    first_line, _, traceback_text = entry["MESSAGE"].partition("\n")
    assert first_line == 'synthesis_failed note="line one\\nline two" logger=t'
    assert traceback_text == entry["EXCEPTION"]


def test_stdlib_loggers_reach_the_journal(journal: Journal) -> None:
    configure_logging("journal", "info", io.StringIO(), journal_socket=journal.path)
    logging.getLogger("aiohttp.access").warning("GET %s %d", "/v1/tts", 200)
    entry = journal.entry()
    assert (entry["MESSAGE"], entry["EVENT"]) == ("GET /v1/tts 200 logger=aiohttp.access", "GET /v1/tts 200")
    assert (entry["LOGGER"], entry["PRIORITY"]) == ("aiohttp.access", "4")


def test_oversized_entry_is_passed_as_sealed_memfd(journal: Journal) -> None:
    configure_logging("journal", "info", io.StringIO(), journal_socket=journal.path)
    blob = "x" * (2 << 20)
    get_logger("t").info("big", blob=blob)
    data, fds, _flags, _address = socket.recv_fds(journal.sock, 1024, 1)
    assert data == b"" and len(fds) == 1
    try:
        seals = fcntl.fcntl(fds[0], fcntl.F_GET_SEALS)
        assert seals & fcntl.F_SEAL_WRITE and seals & fcntl.F_SEAL_SHRINK
        entry = parse_native(os.pread(fds[0], os.fstat(fds[0]).st_size, 0))
    finally:
        os.close(fds[0])
    assert entry["BLOB"] == blob and entry["EVENT"] == "big"


def test_missing_journal_socket_falls_back_to_prefixed_stream(tmp_path: Path) -> None:
    stream = io.StringIO()
    configure_logging("journal", "info", stream, journal_socket=tmp_path / "absent.sock")
    log = get_logger("w")
    log.warning("clock_drift", sm_mhz=1410, note="two words")
    log.info("multi", text="a\nb")
    assert stream.getvalue().splitlines() == [
        '<4>clock_drift sm_mhz=1410 note="two words" logger=w',
        '<6>multi text="a\\nb" logger=w',
    ]


def test_json_lines_and_level_filtering(monkeypatch: pytest.MonkeyPatch) -> None:
    # JobRunner.start() quietens apscheduler's own logger; another test may have run one first.
    monkeypatch.setattr(logging.getLogger("apscheduler.scheduler"), "level", logging.NOTSET)
    monkeypatch.setattr(logging.getLogger("apscheduler"), "level", logging.NOTSET)
    stream = io.StringIO()
    assert configure_logging("json", "info", stream, environ={}) == "json"
    log = get_logger("ishowttsd.api")
    log.debug("hidden", text="user text")
    log.info("request_done", status=200)
    logging.getLogger("apscheduler.scheduler").debug("hidden too")
    logging.getLogger("apscheduler.scheduler").info("Added job %r", "sampler")
    records = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [(r["event"], r["level"], r["logger"]) for r in records] == [
        ("request_done", "info", "ishowttsd.api"), ("Added job 'sampler'", "info", "apscheduler.scheduler")]
    assert records[0]["status"] == 200 and records[0]["timestamp"].endswith("Z")


def test_warning_level_drops_info_and_reconfigure_replaces_handler() -> None:
    first, second = io.StringIO(), io.StringIO()
    configure_logging("json", "info", first)
    configure_logging("json", "warning", second)
    log = get_logger("x")
    log.info("quiet")
    log.error("loud")
    assert first.getvalue() == ""
    assert [json.loads(line)["event"] for line in second.getvalue().splitlines()] == ["loud"]


def test_console_format() -> None:
    stream = io.StringIO()
    configure_logging("console", "info", stream)
    get_logger("c").info("hello", n=1)
    assert "hello" in stream.getvalue() and "n=1" in stream.getvalue()


def test_auto_picks_journal_only_for_the_stream_journald_gave_us(tmp_path: Path) -> None:
    with open(tmp_path / "stderr.log", "w") as stream:
        status = os.fstat(stream.fileno())
        matching = {"JOURNAL_STREAM": f"{status.st_dev}:{status.st_ino}"}
        assert resolve_format("auto", matching, stream) == "journal"
        assert resolve_format("auto", {"JOURNAL_STREAM": "1:2"}, stream) == "json"
        assert resolve_format("auto", {}, stream) == "json"
        assert resolve_format("console", matching, stream) == "console"
    assert resolve_format("auto", {"JOURNAL_STREAM": "1:2"}, io.StringIO()) == "journal"


def test_bad_format_or_level_is_rejected() -> None:
    with pytest.raises(ValueError, match="log format"):
        configure_logging("xml", "info", io.StringIO())
    with pytest.raises(ValueError, match="log level"):
        configure_logging("json", "verbose", io.StringIO())


@pytest.mark.parametrize(("key", "name"), [
    ("job_id", "JOB_ID"), ("event", "EVENT"), ("rtf.p95", "RTF_P95"), ("_private", "PRIVATE"),
    ("9lives", "LIVES"), ("message", "F_MESSAGE"), ("priority", "F_PRIORITY"), ("___", None),
    ("k" * 80, "K" * 64),
])
def test_journal_field_names(key: str, name: str | None) -> None:
    assert journal_field_name(key) == name


def test_journal_datagram_forms() -> None:
    assert journal_datagram([("A", "1"), ("B", "x\ny")]) == b"A=1\nB\n" + struct.pack("<Q", 3) + b"x\ny\n"


def test_compact_line_quotes_only_when_needed() -> None:
    line = compact_line({"event": "e", "level": "info", "timestamp": "t", "a": "plain", "b": "has space",
                         "c": None, "d": True, "_hidden": 1})
    assert line == 'e a=plain b="has space" c=null d=true'
