"""API errors: one exception type, tables mapping engine and aiohttp errors to it, the JSON body.

Every error leaves the daemon as `{"error": {"code": "...", "message": "..."}}` with a fitting status.
The mapping functions here are pure; the middleware that applies them lives in `api/app.py`.
"""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from aiohttp import web

from ishowttsd.api.audio import VoiceAudioError
from ishowttsd.engine.errors import (
    DeadlineExceeded,
    EngineUnavailable,
    QueueFull,
    SynthesisFailed,
    SynthesisRejected,
)
from ishowttsd.voices import InvalidTranscript, InvalidVoiceName, ReservedVoiceName, VoiceNotFound


@dataclass(eq=False)
class ApiError(Exception):
    """An error answer: HTTP status, stable machine-readable code, human message, extra headers.

    `counts_as_failure` marks errors that are the service's failure (engine, deadline, internal),
    which feed `tts_errors_total{cause}`; a caller's mistake (bad field, unknown voice) does not.
    """

    status: int
    code: str
    message: str
    headers: Mapping[str, str] = field(default_factory=dict)
    counts_as_failure: bool = False
    # Not frozen: the interpreter and contextlib assign __traceback__/__context__ on exceptions.

    def __str__(self) -> str:
        return f"{self.status} {self.code}: {self.message}"


def bad_request(code: str, message: str) -> ApiError:
    return ApiError(400, code, message)


def not_found(code: str, message: str) -> ApiError:
    return ApiError(404, code, message)


def too_large(message: str) -> ApiError:
    return ApiError(413, "body_too_large", message)


def unsupported_media(code: str, message: str) -> ApiError:
    return ApiError(415, code, message)


def unprocessable(code: str, message: str) -> ApiError:
    return ApiError(422, code, message)


def _retry_headers(seconds: float) -> dict[str, str]:
    return {"Retry-After": str(max(1, round(seconds)))}


def _from_unavailable(exc: EngineUnavailable) -> ApiError:
    return ApiError(503, "engine_unavailable", f"engine unavailable: {exc.reason}",
                    _retry_headers(exc.retry_after_s), True)


def _from_failed(exc: SynthesisFailed) -> ApiError:
    return ApiError(503, "synthesis_failed", f"synthesis failed: {exc.reason}",
                    _retry_headers(exc.retry_after_s), True)


def _from_queue_full(exc: QueueFull) -> ApiError:
    return ApiError(429, "queue_full", str(exc), _retry_headers(exc.retry_after_s), True)


def _from_deadline(exc: DeadlineExceeded) -> ApiError:
    return ApiError(504, "deadline_exceeded", str(exc) or "request deadline passed", {}, True)


def _from_rejected(exc: SynthesisRejected) -> ApiError:
    return ApiError(422, "synthesis_rejected", str(exc) or "the engine rejected this input", {}, True)


ENGINE_ERRORS: Mapping[type[Exception], Callable[..., ApiError]] = {
    EngineUnavailable: _from_unavailable,
    SynthesisFailed: _from_failed,
    QueueFull: _from_queue_full,
    DeadlineExceeded: _from_deadline,
    SynthesisRejected: _from_rejected,
}

VOICE_ERRORS: Mapping[type[Exception], tuple[int, str]] = {
    VoiceNotFound: (404, "voice_not_found"),
    InvalidVoiceName: (400, "invalid_voice_name"),
    ReservedVoiceName: (400, "reserved_voice_name"),
    InvalidTranscript: (400, "invalid_transcript"),
}

# VoiceAudioError.kind → (status, code): too big 413, not audio we decode 415, wrong shape 422.
VOICE_AUDIO_ERRORS: Mapping[str, tuple[int, str]] = {
    "too_large": (413, "body_too_large"),
    "undecodable": (415, "unsupported_audio"),
    "unsupported_format": (415, "unsupported_audio"),
    "bad_duration": (422, "invalid_voice_duration"),
    "bad_sample_rate": (422, "invalid_sample_rate"),
    "not_finite": (422, "invalid_audio"),
}


def _from_voice_audio(exc: VoiceAudioError) -> ApiError:
    status, code = VOICE_AUDIO_ERRORS[exc.kind]
    return ApiError(status, code, exc.message)


def _from_table(exc: BaseException, table: Mapping[type[Exception], tuple[int, str]]) -> ApiError | None:
    for kind, (status, code) in table.items():
        if isinstance(exc, kind):
            return ApiError(status, code, str(exc))
    return None


HTTP_CODES: Mapping[int, str] = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    415: "unsupported_media_type",
}


def from_http_exception(exc: web.HTTPException) -> ApiError:
    """An aiohttp HTTP error (unknown route, wrong method, body over client_max_size) as an ApiError."""
    code = HTTP_CODES.get(exc.status, f"http_{exc.status}")
    headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else {}
    return ApiError(exc.status, code, exc.reason if exc.status < 500 else "internal error", headers)


INTERNAL = ApiError(500, "internal", "internal error (see the daemon log)", {}, True)


STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})


def _from_storage(exc: BaseException) -> ApiError | None:
    """A full or read-only disk is the machine's state, not our bug: 507 with what happened."""
    if isinstance(exc, OSError) and exc.errno in STORAGE_ERRNOS:
        reason = os.strerror(exc.errno).lower()
        return ApiError(507, "insufficient_storage", f"the daemon could not save this ({reason}); nothing was "
                        "stored — free space in its state directory and try again")
    return None


def to_api_error(exc: BaseException) -> ApiError:
    """Map any exception to the answer the client gets. Unknown exceptions become a bare 500."""
    if isinstance(exc, ApiError):
        return exc
    storage = _from_storage(exc)
    if storage is not None:
        return storage
    if isinstance(exc, web.HTTPException):
        return from_http_exception(exc)
    if isinstance(exc, VoiceAudioError):
        return _from_voice_audio(exc)
    for kind, convert in ENGINE_ERRORS.items():
        if isinstance(exc, kind):
            return convert(exc)
    return _from_table(exc, VOICE_ERRORS) or INTERNAL


def error_body(error: ApiError) -> bytes:
    return json.dumps({"error": {"code": error.code, "message": error.message}}).encode()


def error_response(error: ApiError) -> web.Response:
    return web.Response(status=error.status, body=error_body(error),
                        content_type="application/json", headers=dict(error.headers))
