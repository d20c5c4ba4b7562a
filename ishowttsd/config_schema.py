"""What each configuration key accepts: small Rule objects, their constructors and value texts.

A Rule says in words what it expects (used verbatim in error messages), tests a raw TOML value,
and converts between the TOML value and the attribute stored in the frozen config dataclasses
(for example "0660" <-> 0o660, "/var/lib/x" <-> Path, "" <-> None). The dataclasses in config.py
carry one Rule per field in the field's metadata, so the schema is data, not if-chains.
"""

from __future__ import annotations

import datetime as dt
import difflib
import ipaddress
import json
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MODEL_NAMES = ("F5TTS_v1_Base", "tiny", "random:F5TTS_v1_Base")
CHECKPOINT_SUFFIXES = (".pt", ".safetensors")
_CLOCK_TIME = re.compile(r"([01]\d|2[0-3]):([0-5]\d)")
_OCTAL_MODE = re.compile(r"0?[0-7]{3}")
_DEVICE = re.compile(r"auto|cpu|cuda|cuda:\d{1,2}")
_VOICE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def _same(value: Any) -> Any:
    return value


@dataclass(frozen=True)
class Rule:
    """How one key is checked and converted."""

    expected: str
    accepts: Callable[[Any], bool]
    load: Callable[[Any], Any] = _same
    dump: Callable[[Any], Any] = _same


def setting(default: Any, rule: Rule) -> Any:
    """A dataclass field with its default value and its Rule (kept in the field metadata)."""
    return field(default=default, metadata={"rule": rule})


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (_is_int(value) or isinstance(value, float)) and math.isfinite(value)


def _bounds_text(low: float, high: float | None, above: bool) -> str:
    if high is not None:
        return f"from {low} to {high}"
    return f"> {low}" if above else f">= {low}"


def _within(value: float, low: float, high: float | None, above: bool) -> bool:
    low_ok = value > low if above else value >= low
    return low_ok and (high is None or value <= high)


def integer(low: int, high: int | None = None) -> Rule:
    """An integer (never a boolean) within [low, high]."""
    return Rule(f"an integer {_bounds_text(low, high, False)}",
                lambda v: _is_int(v) and _within(v, low, high, False))


def number(low: float, high: float | None = None, *, above: bool = False) -> Rule:
    """A finite float (an integer is accepted and stored as float) within the bounds."""
    return Rule(f"a number {_bounds_text(low, high, above)}",
                lambda v: _is_number(v) and _within(v, low, high, above), load=float)


def positive() -> Rule:
    """A finite number > 0, stored as float (durations, rates)."""
    return number(0, above=True)


def boolean() -> Rule:
    return Rule("true or false", lambda v: isinstance(v, bool))


def choice(*values: str) -> Rule:
    """One of a fixed set of strings."""
    return Rule("one of " + ", ".join(json.dumps(v) for v in values),
                lambda v: isinstance(v, str) and v in values)


def matching(pattern: re.Pattern[str], expected: str, *, empty_ok: bool = False) -> Rule:
    """A string fully matching `pattern` ("" allowed when empty_ok)."""
    return Rule(expected, lambda v: isinstance(v, str) and
                ((empty_ok and v == "") or pattern.fullmatch(v) is not None))


def text() -> Rule:
    return Rule("a string", lambda v: isinstance(v, str))


def _is_absolute_path(value: Any) -> bool:
    return isinstance(value, str) and value.startswith("/") and "\0" not in value


def absolute_path() -> Rule:
    """An absolute path, stored as Path."""
    return Rule("an absolute path", _is_absolute_path, load=Path, dump=str)


def optional_path() -> Rule:
    """"" (off) or an absolute path; stored as None or Path."""
    return Rule('"" or an absolute path', lambda v: v == "" or _is_absolute_path(v),
                load=lambda v: Path(v) if v else None, dump=lambda p: "" if p is None else str(p))


def octal_mode() -> Rule:
    """Permission bits written as an octal string like "0660"; stored as int."""
    return Rule('an octal mode string like "0660"',
                lambda v: isinstance(v, str) and _OCTAL_MODE.fullmatch(v) is not None,
                load=lambda v: int(v, 8), dump=lambda m: f"{m:04o}")


def clock_time(*, empty_ok: bool = False) -> Rule:
    expected = '"" (off) or a time "HH:MM"' if empty_ok else 'a time "HH:MM"'
    return matching(_CLOCK_TIME, expected, empty_ok=empty_ok)


def weekday() -> Rule:
    return choice(*WEEKDAYS)


def device() -> Rule:
    return matching(_DEVICE, '"auto", "cpu", "cuda" or "cuda:N"')


def _is_device_list(value: Any) -> bool:
    if value == "all":
        return True
    return (isinstance(value, list) and len(value) <= 16
            and all(isinstance(v, str) and _DEVICE.fullmatch(v) and v != "auto" for v in value))


def device_list() -> Rule:
    """[] (one worker on `device`), "all" (one per visible GPU) or a list of "cpu"/"cuda"/"cuda:N"."""
    return Rule('[] (one worker on device), "all" or a list of "cpu", "cuda" or "cuda:N" (at most 16)',
                _is_device_list, load=lambda v: v if v == "all" else tuple(v),
                dump=lambda v: v if v == "all" else list(v))


def voice_name() -> Rule:
    return matching(_VOICE_NAME, "a voice name (letters, digits, '_', '.', '-'; at most 64)")


def is_checkpoint_path(value: str) -> bool:
    return value.endswith(CHECKPOINT_SUFFIXES) and "\0" not in value


def model() -> Rule:
    return Rule('"F5TTS_v1_Base", "tiny", "random:F5TTS_v1_Base" (speed tests only: random weights) '
                'or a path to a .pt or .safetensors checkpoint',
                lambda v: isinstance(v, str) and (v in MODEL_NAMES or is_checkpoint_path(v)))


def parse_clock_time(value: str) -> tuple[int, int]:
    """"HH:MM" -> (hour, minute); raises ValueError otherwise."""
    found = _CLOCK_TIME.fullmatch(value)
    if found is None:
        raise ValueError(f'expected "HH:MM", got {value!r}')
    return int(found.group(1)), int(found.group(2))


def parse_loopback_listen(value: str) -> tuple[str, int]:
    """"127.0.0.1:PORT" or "[::1]:PORT" -> (host, port); raises ValueError for anything else."""
    host, port = _split_host_port(value)
    address = ipaddress.ip_address(host)
    if not address.is_loopback or (address.version == 6 and address != ipaddress.IPv6Address("::1")):
        raise ValueError(f"{host} is not a loopback address")
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"port {port!r} is not 1..65535")
    return host, int(port)


def _split_host_port(value: str) -> tuple[str, str]:
    if value.startswith("["):
        host, separator, port = value[1:].partition("]:")
    else:
        host, separator, port = value.rpartition(":")
    if not separator or (":" in host and not value.startswith("[")):
        raise ValueError(f"{value!r} is not HOST:PORT")
    return host, port


def _is_loopback_listen(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        parse_loopback_listen(value)
    except ValueError:
        return value == ""
    return True


def loopback_listen() -> Rule:
    return Rule('"" (off), "127.x.y.z:PORT" or "[::1]:PORT" (loopback only)', _is_loopback_listen)


_TOML_TYPE_NAMES: tuple[tuple[type | tuple[type, ...], str], ...] = (
    (bool, "boolean"), (int, "integer"), (float, "float"), (str, "string"),
    ((dt.datetime, dt.date), "date"), (dt.time, "time"), (list, "array"), (dict, "table"),
)


def toml_type_name(value: Any) -> str:
    return next((name for kind, name in _TOML_TYPE_NAMES if isinstance(value, kind)), type(value).__name__)


def describe(value: Any) -> str:
    """A TOML value as an error message shows it: its type and, for scalars, the value."""
    kind = toml_type_name(value)
    if kind == "table":
        return "a table"
    if kind in ("boolean", "string", "array"):
        shown = json.dumps(value, default=str)
        return f"{kind} {shown if len(shown) <= 80 else shown[:77] + '...'}"
    return f"{kind} {value}"


def unknown_problem(what: str, name: str, known: Iterable[str]) -> str:
    """The text for a section or key that is not in the schema, with a did-you-mean hint."""
    names = list(known)
    close = difflib.get_close_matches(name, names, n=1)
    hint = f" (did you mean {close[0]}?)" if close else f" (known: {', '.join(names)})"
    return f"expected a known {what}, found unknown {name!r}{hint}"


@dataclass(frozen=True)
class CrossCheck:
    """A rule between two keys of one section, checked when both are valid on their own."""

    section: str
    key: str
    other: str
    holds: Callable[[Any], bool]
    expected: Callable[[Any], str]


CROSS_CHECKS: tuple[CrossCheck, ...] = (
    CrossCheck("daemon", "tcp_token_file", "tcp_listen",
               lambda s: not s.tcp_listen or s.tcp_token_file is not None,
               lambda s: f"a token file path because tcp_listen is {json.dumps(s.tcp_listen)}"),
    CrossCheck("engine", "heartbeat_timeout_s", "ping_interval_s",
               lambda s: s.heartbeat_timeout_s > s.ping_interval_s,
               lambda s: f"a number > ping_interval_s ({s.ping_interval_s})"),
    CrossCheck("engine", "min_frames", "max_frames",
               lambda s: s.min_frames <= s.max_frames,
               lambda s: f"an integer <= max_frames ({s.max_frames})"),
    CrossCheck("limits", "min_voice_s", "max_voice_s",
               lambda s: s.min_voice_s < s.max_voice_s,
               lambda s: f"a number < max_voice_s ({s.max_voice_s})"),
    CrossCheck("watchdog", "canary_max_age_s", "canary_interval_s",
               lambda s: s.canary_max_age_s > s.canary_interval_s,
               lambda s: f"a number > canary_interval_s ({s.canary_interval_s})"),
)
