"""Request validation for the synthesis routes: pure functions from a decoded JSON body to parameters.

Field errors (wrong type, out of range, unknown field) are 400; a well-formed request asking for
something this service does not do (an unsupported audio format) is 422.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ishowttsd.api.errors import bad_request, unprocessable

NFE_RANGE = (1, 64)  # the same bounds as [engine].nfe
SPEED_RANGE = (0.3, 3.0)
SEED_RANGE = (0, 2**32 - 1)
AUDIO_FORMATS = ("wav", "pcm")
OPENAI_STREAM_FORMATS = ("audio",)

TTS_FIELDS = frozenset({"text", "voice", "nfe", "speed", "seed", "format", "stream"})
# "model" and "instructions" are accepted for compatibility and ignored.
OPENAI_FIELDS = frozenset({"model", "input", "voice", "instructions", "response_format", "speed",
                           "stream_format"})


@dataclass(frozen=True)
class SynthesisDefaults:
    """What a request gets for the fields it leaves out, and the text length limit."""

    voice: str
    nfe: int
    speed: float
    max_text_chars: int


@dataclass(frozen=True)
class TtsParams:
    text: str
    voice: str
    nfe: int
    speed: float
    seed: int
    format: str
    stream: bool


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not valid JSON")


def decode_json_object(raw: bytes) -> dict[str, Any]:
    """The request body as a JSON object (NaN/Infinity refused); 400 otherwise."""
    try:
        value = json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise bad_request("bad_json", f"the body is not valid JSON: {exc}") from exc
    except RecursionError as exc:  # e.g. 2 KB of "[[[[": nesting no request of ours needs
        raise bad_request("bad_json", "the body nests JSON too deeply") from exc
    if not isinstance(value, dict):
        raise bad_request("bad_json", "the body must be a JSON object")
    return value


def check_fields(body: Mapping[str, Any], allowed: frozenset[str]) -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise bad_request("unknown_field", f"unknown field(s): {', '.join(unknown)}; "
                          f"accepted: {', '.join(sorted(allowed))}")


def text_field(body: Mapping[str, Any], key: str, max_chars: int) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value.strip():
        raise bad_request("invalid_field", f"'{key}' must be a non-empty string")
    if len(value) > max_chars:
        raise bad_request("text_too_long", f"'{key}' has {len(value)} characters; the limit is {max_chars}")
    return value


def _optional(body: Mapping[str, Any], key: str, default: Any) -> Any:
    value = body.get(key)
    return default if value is None else value


def string_field(body: Mapping[str, Any], key: str, default: str) -> str:
    value = _optional(body, key, default)
    if not isinstance(value, str) or not value:
        raise bad_request("invalid_field", f"'{key}' must be a non-empty string")
    return value


def int_field(body: Mapping[str, Any], key: str, default: int, bounds: tuple[int, int]) -> int:
    value = _optional(body, key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not bounds[0] <= value <= bounds[1]:
        raise bad_request("invalid_field", f"'{key}' must be an integer in {bounds[0]}..{bounds[1]}")
    return value


def float_field(body: Mapping[str, Any], key: str, default: float, bounds: tuple[float, float]) -> float:
    value = _optional(body, key, default)
    valid = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not valid or not bounds[0] <= value <= bounds[1]:
        raise bad_request("invalid_field", f"'{key}' must be a number in {bounds[0]:g}..{bounds[1]:g}")
    return float(value)


def bool_field(body: Mapping[str, Any], key: str, default: bool) -> bool:
    value = _optional(body, key, default)
    if not isinstance(value, bool):
        raise bad_request("invalid_field", f"'{key}' must be true or false")
    return value


def choice_field(body: Mapping[str, Any], key: str, default: str, choices: tuple[str, ...]) -> str:
    value = _optional(body, key, default)
    if not isinstance(value, str):
        raise bad_request("invalid_field", f"'{key}' must be a string")
    if value not in choices:
        raise unprocessable(f"unsupported_{key}", f"{key} {value!r} is not supported; "
                            f"supported: {', '.join(choices)}")
    return value


def seed_field(body: Mapping[str, Any], new_seed: Callable[[], int]) -> int:
    return new_seed() if body.get("seed") is None else int_field(body, "seed", 0, SEED_RANGE)


def parse_tts(body: Mapping[str, Any], defaults: SynthesisDefaults, new_seed: Callable[[], int]) -> TtsParams:
    """POST /v1/tts: {text, voice?, nfe?, speed?, seed?, format?, stream?}."""
    check_fields(body, TTS_FIELDS)
    return TtsParams(
        text=text_field(body, "text", defaults.max_text_chars),
        voice=string_field(body, "voice", defaults.voice),
        nfe=int_field(body, "nfe", defaults.nfe, NFE_RANGE),
        speed=float_field(body, "speed", defaults.speed, SPEED_RANGE),
        seed=seed_field(body, new_seed),
        format=choice_field(body, "format", "wav", AUDIO_FORMATS),
        stream=bool_field(body, "stream", False),
    )


def parse_openai_speech(body: Mapping[str, Any], defaults: SynthesisDefaults,
                        new_seed: Callable[[], int]) -> TtsParams:
    """POST /v1/audio/speech (OpenAI-compatible): {model, input, voice, response_format, speed,
    stream_format}."""
    check_fields(body, OPENAI_FIELDS)
    stream_format = body.get("stream_format")
    if stream_format is not None:
        choice_field(body, "stream_format", "audio", OPENAI_STREAM_FORMATS)
    return TtsParams(
        text=text_field(body, "input", defaults.max_text_chars),
        voice=string_field(body, "voice", defaults.voice),
        nfe=defaults.nfe,
        speed=float_field(body, "speed", defaults.speed, SPEED_RANGE),
        seed=new_seed(),
        format=choice_field(body, "response_format", "wav", AUDIO_FORMATS),
        stream=stream_format is not None,
    )
