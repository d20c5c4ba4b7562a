"""structlog set-up: JSON lines, a console form, or journald with real structured fields.

Formats (table RENDERERS):
  json     one JSON object per line on the stream (the default outside systemd);
  console  structlog's human-readable form, no colours;
  journal  each event goes to journald's native socket (/run/systemd/journal/socket) as
           KEY=VALUE fields: MESSAGE ("event key=value ..."), PRIORITY, SYSLOG_IDENTIFIER and one
           upper-cased field per event key (EVENT=, JOB_ID=, ...), queryable with
           `journalctl -o json` or `journalctl EVENT=worker_ready`. If the socket cannot be reached
           the same line goes to the stream prefixed with the sd-daemon priority "<N>".
  auto     journal when JOURNAL_STREAM is set (and, when the stream has a file descriptor, names
           that stream, as systemd.exec(5) advises), else json.
Stdlib logging (aiohttp, apscheduler, ...) is routed through the same processors and output.
"""

from __future__ import annotations

import array
import errno
import fcntl
import json
import logging
import os
import re
import socket
import struct
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

__all__ = [
    "JOURNAL_SOCKET", "JournalRenderer", "compact_line", "configure_logging", "direct_line_handlers",
    "emit_to_line_handlers", "get_logger", "journal_datagram", "journal_field_name", "journal_fields",
    "journal_message", "priority_of", "resolve_format", "stream_is_journal",
]

JOURNAL_SOCKET = Path("/run/systemd/journal/socket")
PRIORITIES = {"debug": 7, "info": 6, "warning": 4, "warn": 4, "error": 3, "exception": 3,
              "critical": 2, "fatal": 2}
LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
          "error": logging.ERROR, "critical": logging.CRITICAL}
RESERVED_FIELDS = frozenset({"MESSAGE", "PRIORITY", "SYSLOG_IDENTIFIER"})
SKIPPED_KEYS = frozenset({"level", "timestamp"})
_NOT_FIELD_CHARS = re.compile(r"[^A-Z0-9_]")
_PLAIN_VALUE = re.compile(r"[^\s\"'=\\]+")
_MEMFD_SEALS = fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE | fcntl.F_SEAL_SEAL


def priority_of(event_dict: Mapping[str, Any]) -> int:
    """sd-daemon/syslog priority of an event (info when its level is unknown)."""
    return PRIORITIES.get(str(event_dict.get("level", "info")).lower(), 6)


def _value_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


def _compact_value(value: Any) -> str:
    text = _value_text(value)
    return text if _PLAIN_VALUE.fullmatch(text) else json.dumps(text, ensure_ascii=False)


def compact_line(event_dict: Mapping[str, Any]) -> str:
    """One line "event key=value ..."; values with spaces, quotes or newlines are JSON-quoted."""
    pairs = (f"{key}={_compact_value(value)}" for key, value in event_dict.items()
             if key != "event" and key not in SKIPPED_KEYS and not key.startswith("_"))
    return " ".join([_value_text(event_dict.get("event", "")), *pairs]).replace("\n", "\\n")


def journal_message(event_dict: Mapping[str, Any]) -> str:
    """MESSAGE of a journal entry: the compact line, then a traceback (if any) on its own lines."""
    exception = event_dict.get("exception")
    if not isinstance(exception, str) or not exception:
        return compact_line(event_dict)
    rest = {key: value for key, value in event_dict.items() if key != "exception"}
    return compact_line(rest) + "\n" + exception.rstrip("\n")


def journal_field_name(key: str) -> str | None:
    """A journald field name for an event key: upper case, [A-Z0-9_], no leading '_' or digit,
    at most 64 characters; names we set ourselves get an "F_" prefix; None if nothing is left."""
    name = _NOT_FIELD_CHARS.sub("_", key.upper()).lstrip("_0123456789")[:64]
    if name in RESERVED_FIELDS:
        return "F_" + name
    return name or None


def journal_fields(event_dict: Mapping[str, Any], identifier: str) -> list[tuple[str, str]]:
    """The (NAME, value) pairs of one journal entry."""
    fields = [("MESSAGE", journal_message(event_dict)), ("PRIORITY", str(priority_of(event_dict))),
              ("SYSLOG_IDENTIFIER", identifier)]
    for key, value in event_dict.items():
        name = journal_field_name(key)
        if name and key not in SKIPPED_KEYS and not key.startswith("_"):
            fields.append((name, _value_text(value)))
    return fields


def _encode_field(name: str, value: str) -> bytes:
    data = value.encode("utf-8", errors="replace")
    if b"\n" not in data:
        return name.encode() + b"=" + data + b"\n"
    return name.encode() + b"\n" + struct.pack("<Q", len(data)) + data + b"\n"


def journal_datagram(fields: list[tuple[str, str]]) -> bytes:
    """journald's native protocol: NAME=value lines; a value holding a newline uses the binary
    form NAME\\n<64-bit little-endian length><bytes>\\n."""
    return b"".join(_encode_field(name, value) for name, value in fields)


class JournalRenderer:
    """Final processor: sends the event to journald natively and returns "" (nothing for the
    stream); if journald cannot be reached, returns the "<priority>event key=value" line."""

    def __init__(self, socket_path: Path = JOURNAL_SOCKET, identifier: str = "ishowttsd") -> None:
        self._path = str(socket_path)
        self._identifier = identifier
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    def __call__(self, logger: WrappedLogger, method_name: str, event_dict: EventDict) -> str:
        payload = journal_datagram(journal_fields(event_dict, self._identifier))
        if self._send(payload):
            return ""
        return f"<{priority_of(event_dict)}>{compact_line(event_dict)}"

    def close(self) -> None:
        self._socket.close()

    def _send(self, payload: bytes) -> bool:
        try:
            self._socket.sendto(payload, self._path)
        except OSError as exc:
            return exc.errno in (errno.EMSGSIZE, errno.ENOBUFS) and self._send_large(payload)
        return True

    def _send_large(self, payload: bytes) -> bool:
        """Too big for one datagram: pass a sealed memfd holding it (as sd_journal_sendv does)."""
        fd = os.memfd_create("journal-entry", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        try:
            os.write(fd, payload)
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS, _MEMFD_SEALS)
            rights = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]))]
            self._socket.sendmsg([], rights, 0, self._path)
            return True
        except OSError:
            return False
        finally:
            os.close(fd)


def stream_is_journal(journal_stream: str, stream: TextIO) -> bool:
    """Does JOURNAL_STREAM ("DEV:INODE") name `stream`? A stream without a descriptor is trusted."""
    if not journal_stream:
        return False
    try:
        status = os.fstat(stream.fileno())
    except (AttributeError, OSError, ValueError):
        return True
    return journal_stream == f"{status.st_dev}:{status.st_ino}"


def resolve_format(fmt: str, environ: Mapping[str, str], stream: TextIO) -> str:
    """"auto" -> "journal" or "json"; other names pass through (checked against RENDERERS)."""
    if fmt == "auto":
        return "journal" if stream_is_journal(environ.get("JOURNAL_STREAM", ""), stream) else "json"
    if fmt not in RENDERERS:
        raise ValueError(f"unknown log format {fmt!r}; expected auto, {', '.join(RENDERERS)}")
    return fmt


RENDERERS: dict[str, Callable[[Path, str], Processor]] = {
    "json": lambda path, ident: structlog.processors.JSONRenderer(ensure_ascii=False),
    "console": lambda path, ident: structlog.dev.ConsoleRenderer(colors=False),
    "journal": lambda path, ident: JournalRenderer(path, ident),
}


class _LineHandler(logging.Handler):
    """Renders each record through the structlog formatter and writes it as a line; an empty
    result (the journal renderer already delivered it) writes nothing. structlog's own events
    come in through `emit_event` (see `emit_to_line_handlers`): rendered by the same processors,
    without a LogRecord."""

    def __init__(self, stream: TextIO, renderer: Processor) -> None:
        super().__init__()
        self.stream = stream
        self._renderer = renderer
        self._processors = _rendering_processors(renderer)
        self.setFormatter(_formatter(renderer))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._write(self.format(record))
        except Exception:
            self.handleError(record)

    def emit_event(self, logger: WrappedLogger, method_name: str, event_dict: EventDict) -> None:
        """A structlog event, rendered and written under the handler's lock."""
        self.acquire()
        try:
            line: Any = event_dict
            for processor in self._processors:
                line = processor(logger, method_name, line)
            self._write(line)
        except Exception:
            self.handleError(logging.makeLogRecord({"msg": event_dict.get("event"), "name": method_name}))
        finally:
            self.release()

    def _write(self, line: str) -> None:
        if line:
            self.stream.write(line + "\n")
            self.stream.flush()

    def close(self) -> None:
        closer = getattr(self._renderer, "close", None)
        if closer is not None:
            closer()
        super().close()


def direct_line_handlers(logger: WrappedLogger) -> list[_LineHandler]:
    """The handlers a structlog event can go to without stdlib logging: the root's, when all of them
    are ours and `logger` (a stdlib logger) has none of its own; else [] (the stdlib path)."""
    root_handlers = logging.getLogger().handlers
    own = getattr(logger, "handlers", None)
    if own or not root_handlers or not getattr(logger, "propagate", False):
        return []
    lines = [handler for handler in root_handlers if isinstance(handler, _LineHandler)]
    return lines if len(lines) == len(root_handlers) else []


def emit_to_line_handlers(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> Any:
    """Last structlog processor: write the event straight through our line handlers (no LogRecord,
    no findCaller, no second pass through the formatter); when other handlers are installed (a
    test's log capture), hand it to stdlib logging as before."""
    handlers = direct_line_handlers(logger)
    if not handlers:
        return structlog.stdlib.ProcessorFormatter.wrap_for_formatter(logger, method_name, event_dict)
    for handler in handlers:
        handler.emit_event(logger, method_name, event_dict if len(handlers) == 1 else dict(event_dict))
    raise structlog.DropEvent


def _shared_processors() -> list[Processor]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
    ]


def _rendering_processors(renderer: Processor) -> list[Processor]:
    """What turns a structlog event dict into the output line (shared by both paths)."""
    return [structlog.processors.format_exc_info, structlog.processors.UnicodeDecoder(), renderer]


def _formatter(renderer: Processor) -> structlog.stdlib.ProcessorFormatter:
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_shared_processors(),
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    *_rendering_processors(renderer)])


def _install_root_handler(handler: logging.Handler, level: int) -> None:
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _LineHandler)]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(level)


def configure_logging(fmt: str = "auto", level: str = "info", stream: TextIO | None = None, *,
                      environ: Mapping[str, str] | None = None, journal_socket: Path = JOURNAL_SOCKET,
                      identifier: str = "ishowttsd") -> str:
    """Set up structlog and stdlib logging; returns the format used ("json", "journal", "console").

    `stream` defaults to sys.stderr at call time; `environ` to os.environ. Safe to call again
    (e.g. on reload): the previous handler is replaced.
    """
    if level not in LEVELS:
        raise ValueError(f"unknown log level {level!r}; expected {', '.join(LEVELS)}")
    out = sys.stderr if stream is None else stream
    chosen = resolve_format(fmt, os.environ if environ is None else environ, out)
    _configure_structlog()
    _install_root_handler(_LineHandler(out, RENDERERS[chosen](journal_socket, identifier)), LEVELS[level])
    return chosen


def _configure_structlog() -> None:
    structlog.configure(
        processors=[structlog.stdlib.filter_by_level, *_shared_processors(),
                    structlog.stdlib.PositionalArgumentsFormatter(), emit_to_line_handlers],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    """A structlog logger named `name` (becomes LOGGER= in the journal, "logger" in JSON)."""
    return structlog.stdlib.get_logger(name)
