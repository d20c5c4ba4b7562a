"""Hostile input against every route of the real daemon (hypothesis), plus giant bodies and slow clients.

After every case: no 5xx except the documented 503/504 (docs/api.md), the daemon and its worker
are the same processes (no crash), and nothing outside state/voices changed on disk.
HYPOTHESIS_PROFILE=ci keeps this to a few minutes; scripts/fuzz_long.sh runs >= 10,000 cases.
"""

from __future__ import annotations

import io
import socket
import threading
import time
import wave
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
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
from hypothesis import example, given
from hypothesis import strategies as st
from reliability_support import (
    DaemonProcess,
    Reply,
    TreeEntry,
    UnixHTTPConnection,
    request,
    snapshot_tree,
    start_daemon,
    wait_for,
)

MAX_CHARS, MAX_UPLOAD = 60, 1024 * 1024
# docs/api.md: the only 5xx a client may see, by status → error codes
DOCUMENTED_5XX = {503: {"engine_unavailable", "not_ready"}, 504: {"deadline_exceeded"}}
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


# Routes that may write files (relative to the daemon's directory); every other route writes nothing.
ALLOWED_WRITES = {"/v1/voices": ("state/voices/",), "/v1/config/backups": ("state/config-backups/",),
                  "/v1/config/rollback": ("state/config-backups/", "ishowttsd.toml"),
                  "/v1/jobs/": ("state/", "log/")}


def allowed_writes(path: str) -> tuple[str, ...]:
    return next((prefixes for route, prefixes in ALLOWED_WRITES.items() if path.startswith(route)), ())


class Blob(bytes):
    """Bytes with a short repr, so hypothesis' reports stay readable."""

    def __repr__(self) -> str:
        return f"Blob({len(self)} bytes: {bytes(self[:48])!r}...)" if len(self) > 64 else bytes.__repr__(self)


@dataclass(repr=False)
class Target:
    daemon: DaemonProcess
    root: Path
    worker: int
    baseline: dict[str, TreeEntry] = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"Target({self.root})"

    @property
    def voices(self) -> Path:
        return self.root / "state" / "voices"

    def tree(self) -> dict[str, TreeEntry]:
        return snapshot_tree(self.root, lambda p: p.name == "daemon.log")

    def check_alive(self) -> None:
        assert self.daemon.process is not None and self.daemon.process.poll() is None, "the daemon died"
        engine = self.daemon.status()["engine"]
        assert (engine["state"], engine["pid"]) == ("ready", self.worker), f"worker crashed or replaced: {engine}"

    def check_files(self, allowed: tuple[str, ...]) -> None:
        """Only paths under `allowed` changed since the last case; no work dirs left among the voices."""
        now, before = self.tree(), self.baseline
        self.baseline = now  # one bad case must not fail all later ones
        changed = {p for p in now.keys() | before.keys() if now.get(p) != before.get(p)}
        outside = sorted(p for p in changed if not (allowed and p.startswith(allowed)))
        assert not outside, f"files changed outside {allowed or '(nothing may change)'}: {outside}"
        strays = [p.name for p in self.voices.iterdir() if p.name.startswith(".")]
        assert not strays, f"work directories left in the voices dir: {strays}"


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> Iterator[Target]:
    root = tmp_path_factory.mktemp("fuzz")
    daemon = start_daemon(root, models_dir, engine={"nfe": 2, "heartbeat_timeout_s": 30.0},
                          limits={"max_text_chars": MAX_CHARS, "max_upload_bytes": MAX_UPLOAD,
                                  "request_timeout_s": 60.0})
    found = Target(daemon, root, int(daemon.status()["engine"]["pid"]))
    wait_for(lambda: list((root / "state" / "config-backups").glob("*-boot.json")), 60, "the boot backup")
    found.baseline = found.tree()
    yield found
    assert daemon.stop() == 0, daemon.log()[-3000:]


def check_reply(reply: Reply, target: Target) -> None:
    """A documented answer: 2xx/4xx with a JSON error on failure, 5xx only as docs/api.md lists."""
    is_json = reply.headers.get("content-type", "").startswith("application/json")
    if reply.status >= 400 and is_json and reply.body:  # HEAD answers carry no body
        error = reply.json()["error"]
        assert error["code"] and error["message"], reply.body
        if reply.status >= 500:
            assert error["code"] in DOCUMENTED_5XX.get(reply.status, set()), (reply.status, reply.body)
    assert reply.status < 500 or reply.status in DOCUMENTED_5XX, (reply.status, reply.body[:500])
    if reply.status == 200 and reply.headers.get("content-type") == "audio/wav":
        with wave.open(io.BytesIO(reply.body)) as wav:
            assert wav.getframerate() == 24000 and wav.getnframes() > 0


def after_case(target: Target, route: str = "") -> None:
    target.check_alive()
    target.check_files(allowed_writes(route))


def post(target: Target, path: str, body: bytes, content_type: str | None) -> Reply:
    headers = {"Content-Type": content_type} if content_type is not None else {}
    return request(target.daemon.socket, "POST", path, body, headers, timeout=90)


@given(body=tts_bodies(MAX_CHARS))
@example(body={"text": "x" * (MAX_CHARS + 1)}).via("over the limit")
@example(body={"text": "\ud800\udfff\x00\x1b[31m"}).via("surrogates and control characters")
@example(body={"text": "Hi.", "stream": True, "format": "pcm"}).via("streamed pcm")
def test_fuzz_tts_json(target: Target, body: dict[str, Any]) -> None:
    check_reply(post(target, "/v1/tts", json_bytes(body), "application/json"), target)
    after_case(target)


@given(body=openai_bodies(MAX_CHARS))
def test_fuzz_openai_speech_json(target: Target, body: dict[str, Any]) -> None:
    check_reply(post(target, "/v1/audio/speech", json_bytes(body), "application/json"), target)
    after_case(target)


@given(path=st.sampled_from(JSON_ROUTES), content_type=st.sampled_from(CONTENT_TYPES),
       body=st.one_of(st.sampled_from(HOSTILE_BODIES), st.binary(max_size=2048), ANY_JSON.map(json_bytes)).map(Blob))
def test_fuzz_raw_bodies(target: Target, path: str, content_type: str, body: bytes) -> None:
    check_reply(post(target, path, body, content_type or None), target)
    after_case(target, path)


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


@given(name=st.one_of(VOICE_NAMES, HOSTILE_TEXT), method=st.sampled_from(["GET", "DELETE", "POST", "PUT"]),
       encode=st.booleans())
def test_fuzz_voice_paths(target: Target, name: str, method: str, encode: bool) -> None:
    raw = name.encode("utf-8", "surrogatepass").decode("latin-1")
    segment = quote(raw, safe="" if encode else "/%.") if raw else ""
    if any(ord(c) < 0x21 or ord(c) > 0x7E for c in segment):
        segment = quote(segment, safe="%")
    check_reply(request(target.daemon.socket, method, f"/v1/voices/{segment}", timeout=30), target)
    after_case(target, "/v1/voices")


@given(method=st.sampled_from(METHODS), path=st.sampled_from(PATHS))
def test_fuzz_methods_and_paths(target: Target, method: str, path: str) -> None:
    check_reply(request(target.daemon.socket, method, path, timeout=30), target)
    after_case(target, path)


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


def chunks_of(data: bytes, size: int) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start:start + size]


def post_chunked(path: str, route: str, pieces: Iterator[bytes], content_type: str) -> Reply:
    conn = UnixHTTPConnection(path, 60)
    try:
        conn.request("POST", route, body=pieces, headers={"Content-Type": content_type}, encode_chunked=True)
        answer = conn.getresponse()
        return Reply(answer.status, {k.lower(): v for k, v in answer.getheaders()}, answer.read())
    except (BrokenPipeError, ConnectionResetError):
        return Reply(0, {}, b"connection closed while sending")
    finally:
        conn.close()


def test_giant_uploads_are_refused_with_413_whether_sized_or_chunked(target: Target) -> None:
    giant = b"RIFF" + b"\0" * (MAX_UPLOAD + 512 * 1024)
    body, content_type = build_form({"name": "giant", "text": "Hello.", "audio": giant, "mangle": "none"})
    sized = post(target, "/v1/voices", body, content_type)
    chunked = post_chunked(target.daemon.socket, "/v1/voices", chunks_of(body, 65536), content_type)
    print(f"\nFIGURE giant upload ({len(body)} bytes): sized {sized.status}, chunked {chunked.status}")
    assert (sized.status, chunked.status) == (413, 413), (sized.body, chunked.body)
    after_case(target, "/v1/voices")


# ---- slow clients -------------------------------------------------------------------------------
SLOW_CLIENTS, TRICKLE_EVERY_S = 12, 0.1
SLOW_BODY = json_bytes({"text": "Slow.", "nfe": 1})


def trickle(path: str, body: bytes, every_s: float, results: list[int]) -> None:
    """POST /v1/tts sending the body one byte at a time; appends the answer's status (0 = none)."""
    head = (f"POST /v1/tts HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(60)
        sock.connect(path)
        sock.sendall(head)
        for byte in body:
            time.sleep(every_s)
            sock.sendall(bytes([byte]))
        answer = sock.makefile("rb").readline().split()
    results.append(int(answer[1]) if len(answer) > 1 else 0)


def timed_tts(path: str) -> float:
    started = time.monotonic()
    assert request(path, "POST", "/v1/tts", {"text": "Quick one.", "nfe": 2}, timeout=60).status == 200
    return time.monotonic() - started


def test_slow_clients_do_not_block_others(target: Target) -> None:
    sock = target.daemon.socket
    alone = max(timed_tts(sock) for _ in range(3))
    statuses: list[int] = []
    threads = [threading.Thread(target=trickle, args=(sock, SLOW_BODY, TRICKLE_EVERY_S, statuses))
               for _ in range(SLOW_CLIENTS)]
    stalled = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stalled.connect(sock)
    stalled.sendall(b"POST /v1/tts HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    b"Content-Length: 1000\r\n\r\n{")  # and never the rest
    trickling_s = len(SLOW_BODY) * TRICKLE_EVERY_S
    for thread in threads:
        thread.start()
    time.sleep(1.0)
    meanwhile = [timed_tts(sock) for _ in range(3)]
    for thread in threads:
        thread.join(trickling_s + 60)
    stalled.close()
    print(f"\nFIGURE slow clients: {SLOW_CLIENTS} clients trickling 1 byte/{TRICKLE_EVERY_S}s "
          f"({trickling_s:.1f}s per body) + 1 stalled: other requests took {max(meanwhile):.2f}s "
          f"(alone {alone:.2f}s); the trickled requests got {sorted(statuses)}")
    assert max(meanwhile) < trickling_s, "a normal request waited for the slow clients"
    assert statuses == [200] * SLOW_CLIENTS
    after_case(target)
