"""Hostile input against every route of the real daemon (hypothesis); giant bodies and slow clients
are test_slow_clients.py.

After every case: no 5xx except the documented 503/504 (docs/api.md), the daemon and its worker
are the same processes (no crash), and nothing outside state/voices changed on disk (the admin
routes may write only their own files: ALLOWED_WRITES).
HYPOTHESIS_PROFILE=ci (default): 60 cases per @given test, 420 in all, about 2 minutes on 2 cores.
HYPOTHESIS_PROFILE=long: 1500 per test, 10,500 in all (scripts/fuzz_long.sh; FUZZ_EXAMPLES overrides).
The profiles apply to this module's tests only (no global hypothesis profile is loaded).
"""

from __future__ import annotations

import os
import socket
from typing import Any
from urllib.parse import quote

import soundfile
from fuzz_strategies import (
    ANY_JSON,
    HOSTILE_TEXT,
    VOICE_NAMES,
    build_form,
    json_bytes,
    openai_bodies,
    tts_bodies,
    voice_forms,
)
from fuzz_target import Blob, Target, after_case, check_reply, post
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from reliability_support import PLAIN_LIMITS, request

# One case talks to a real daemon over a socket: no per-case deadline, no health check about slowness or
# a module-scoped fixture. ci: fixed seed, no example database; long: random seed, failures kept.
_COMMON = {"deadline": None, "print_blob": True,
           "suppress_health_check": [HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                     HealthCheck.data_too_large]}
PROFILES = {"ci": settings(max_examples=60, derandomize=True, database=None, **_COMMON),
            "long": settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", "1500")), **_COMMON)}
FUZZ = PROFILES[os.environ.get("HYPOTHESIS_PROFILE", "ci")]
MAX_CHARS = PLAIN_LIMITS["max_text_chars"]
JSON_ROUTES = ["/v1/tts", "/v1/audio/speech", "/v1/voices", "/v1/config/backups", "/v1/config/rollback",
               "/v1/jobs/sampler/run", "/v1/jobs/../run", "/v1/admin/fault"]
CONTENT_TYPES = ["application/json", "application/json; charset=latin-1", "text/plain", "", "multipart/form-data",
                 "multipart/form-data; boundary=x", "application/x-www-form-urlencoded", "audio/wav"]
HOSTILE_BODIES = [b"[" * 60_000, b"{" * 30_000, b'{"text": NaN}', b'{"text": Infinity}', b'{"text":"a"',
                  b"\xff\xfe{\x00}\x00", b'{"text": "\\ud800"}', b"null", b"[]", b'"text"', b"1e999999",
                  b'{"text": "x", "text": 1}', b" " * 70_000, b"\x00" * 100]
METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "TRACE", "BREW"]
PATHS = ["/", "/healthz", "/readyz", "/metrics", "/v1/status", "/v1/tts", "/v1/audio/speech", "/v1/voices",
         "/v1/voices/default", "/v1/jobs", "/v1/config/backups", "/v1/admin/fault", "//v1//tts", "/v1/tts/",
         "/v1/voices/%2e%2e", "/v1/voices/..%2f..%2fetc", "/%00", "/v1/" + "a" * 5000, "/v1/tts?x=1&x=2"]


@FUZZ
@given(body=tts_bodies(MAX_CHARS))
@example(body={"text": "x" * (MAX_CHARS + 1)}).via("over the limit")
@example(body={"text": "\ud800\udfff\x00\x1b[31m"}).via("surrogates and control characters")
@example(body={"text": "Hi.", "stream": True, "format": "pcm"}).via("streamed pcm")
def test_fuzz_tts_json(target: Target, body: dict[str, Any]) -> None:
    check_reply(post(target, "/v1/tts", json_bytes(body), "application/json"), target)
    after_case(target)


@FUZZ
@given(body=openai_bodies(MAX_CHARS))
def test_fuzz_openai_speech_json(target: Target, body: dict[str, Any]) -> None:
    check_reply(post(target, "/v1/audio/speech", json_bytes(body), "application/json"), target)
    after_case(target)


@FUZZ
@given(path=st.sampled_from(JSON_ROUTES), content_type=st.sampled_from(CONTENT_TYPES),
       body=st.one_of(st.sampled_from(HOSTILE_BODIES), st.binary(max_size=2048), ANY_JSON.map(json_bytes)).map(Blob))
def test_fuzz_raw_bodies(target: Target, path: str, content_type: str, body: bytes) -> None:
    check_reply(post(target, path, body, content_type or None), target)
    after_case(target, path)


@FUZZ
@given(form=voice_forms(), speak=st.booleans())
def test_fuzz_voice_upload(target: Target, form: dict[str, Any], speak: bool) -> None:
    body, content_type = build_form(form)
    reply = post(target, "/v1/voices", body, content_type)
    check_reply(reply, target)
    if reply.status == 201:
        check_stored_voice(target, reply.json()["name"], speak)
    after_case(target, "/v1/voices")


def check_stored_voice(target: Target, name: str, speak: bool) -> None:
    directory = target.voices / name
    assert directory.parent == target.voices and directory.is_dir(), f"voice {name!r} stored elsewhere"
    assert soundfile.info(str(directory / "ref.wav")).frames > 0
    if speak:
        spoken = request(target.daemon.socket, "POST", "/v1/tts", {"text": "Hi.", "voice": name, "nfe": 1},
                         timeout=90)
        assert spoken.status == 200, spoken.body
    assert request(target.daemon.socket, "DELETE", f"/v1/voices/{name}").status == 200
    assert not directory.exists()


@FUZZ
@given(name=st.one_of(VOICE_NAMES, HOSTILE_TEXT), method=st.sampled_from(["GET", "DELETE", "POST", "PUT"]),
       encode=st.booleans())
def test_fuzz_voice_paths(target: Target, name: str, method: str, encode: bool) -> None:
    raw = name.encode("utf-8", "surrogatepass").decode("latin-1")
    segment = quote(raw, safe="" if encode else "/%.") if raw else ""
    if any(ord(c) < 0x21 or ord(c) > 0x7E for c in segment):
        segment = quote(segment, safe="%")
    check_reply(request(target.daemon.socket, method, f"/v1/voices/{segment}", timeout=30), target)
    after_case(target, "/v1/voices")


@FUZZ
@given(method=st.sampled_from(METHODS), path=st.sampled_from(PATHS))
def test_fuzz_methods_and_paths(target: Target, method: str, path: str) -> None:
    check_reply(request(target.daemon.socket, method, path, timeout=30), target)
    after_case(target, path)


@FUZZ
@given(raw=st.one_of(st.binary(max_size=512), st.sampled_from([
    b"GET / HTTP/1.1\r\n\r\n", b"GET /healthz HTTP/9.9\r\n\r\n", b"POST /v1/tts HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
    b"POST /v1/tts HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n",
    b"POST /v1/tts HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\nzz\r\n",
    b"GET /healthz HTTP/1.1\r\n" + b"X: " + b"a" * 70_000 + b"\r\n\r\n",
    b"GET /healthz HTTP/1.1\r\n" + b"X: y\r\n" * 500 + b"\r\n", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"])))
def test_fuzz_raw_http(target: Target, raw: bytes) -> None:
    status = raw_exchange(target.daemon.socket, raw)
    assert status is None or status < 500, status
    after_case(target)


def raw_exchange(path: str, raw: bytes, timeout_s: float = 5.0) -> int | None:
    """Send bytes as they are; the status code of the answer, or None when the daemon just closed."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout_s)
        sock.connect(path)
        try:
            sock.sendall(raw)
            sock.shutdown(socket.SHUT_WR)
            head = sock.recv(64)
        except (TimeoutError, ConnectionResetError, BrokenPipeError):
            return None
    parts = head.split(b" ", 2)
    return int(parts[1]) if head.startswith(b"HTTP/") and len(parts) > 1 and parts[1].isdigit() else None
