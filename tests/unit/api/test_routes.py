"""The HTTP API end to end over aiohttp's test server, with a small engine double (this file only)."""

from __future__ import annotations

import asyncio
import io
import logging
import time
import wave
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import aiohttp
import numpy as np
import pytest
import soundfile as sf
from aiohttp.test_utils import TestClient, TestServer
from structlog.testing import capture_logs

from ishowttsd.api.app import DEPS, AppDeps, create_app
from ishowttsd.config import Config, LimitsConfig
from ishowttsd.engine.client import SynthesisRequest
from ishowttsd.engine.errors import (
    DeadlineExceeded,
    EngineUnavailable,
    QueueFull,
    SynthesisFailed,
    SynthesisRejected,
)
from ishowttsd.metrics import Metrics
from ishowttsd.voices import DEFAULT_REF_TEXT, VoiceStore, find_default_reference

PIECE_SAMPLES = 2_400  # 0.1 s at 24 kHz


@dataclass
class EngineDouble:
    """Implements the EngineClient contract: seed-dependent int16 PCM in `pieces` pieces of 0.1 s."""

    ready: bool = True
    pieces: int = 3
    fail_with: Exception | None = None
    fail_after: int = 0
    delay_s: float = 0.0
    requests: list[SynthesisRequest] = field(default_factory=list)
    closed: list[bool] = field(default_factory=list)
    yielded: int = 0

    def is_ready(self) -> bool:
        return self.ready

    def info(self) -> dict[str, object]:
        return {"state": "ready" if self.ready else "starting", "model": "double", "path": Path("/x")}

    async def synthesize(self, req: SynthesisRequest) -> AsyncIterator[bytes]:
        self.requests.append(req)
        rng = np.random.default_rng(req.seed)
        try:
            for index in range(self.pieces):
                if self.fail_with is not None and index == self.fail_after:
                    raise self.fail_with
                await asyncio.sleep(self.delay_s)
                yield rng.integers(-3000, 3000, PIECE_SAMPLES, dtype="<i2").tobytes()
                self.yielded += 1
        finally:
            self.closed.append(True)


def sine_bytes(seconds: float, rate: int = 16_000, fmt: str = "WAV") -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    buffer = io.BytesIO()
    sf.write(buffer, 0.3 * np.sin(2 * np.pi * 200.0 * t), rate, format=fmt)
    return buffer.getvalue()


def make_deps(tmp_path: Path, engine: EngineDouble, config: Config | None = None) -> AppDeps:
    config = config or Config()
    voices = VoiceStore(tmp_path / "voices", find_default_reference(), DEFAULT_REF_TEXT, config.limits)
    return AppDeps(
        get_config=lambda: config,
        config_path=tmp_path / "ishowttsd.toml",
        engine=engine,
        voices=voices,
        metrics=Metrics(),
        started_at=time.monotonic() - 5.0,
        status_extra=lambda: {"jobs": {"backup": "ok"}},
        new_seed=lambda: 1234,
    )


@pytest.fixture
def engine() -> EngineDouble:
    return EngineDouble()


@pytest.fixture
async def client(tmp_path: Path, engine: EngineDouble) -> AsyncIterator[TestClient]:
    async with TestClient(TestServer(create_app(make_deps(tmp_path, engine)))) as test_client:
        yield test_client


def metrics_of(client: TestClient) -> Metrics:
    return client.server.app[DEPS].metrics


async def error_of(response: aiohttp.ClientResponse) -> str:
    assert response.content_type == "application/json"
    body = await response.json()
    assert set(body["error"]) == {"code", "message"}
    return body["error"]["code"]


# --- synthesis -----------------------------------------------------------------------------------
async def test_tts_returns_a_wav_with_seed_and_timing_headers(
    client: TestClient, engine: EngineDouble
) -> None:
    response = await client.post("/v1/tts", json={"text": "hello world", "nfe": 12, "speed": 1.2})
    assert response.status == 200 and response.content_type == "audio/wav"
    with wave.open(io.BytesIO(await response.read())) as reader:
        assert (reader.getframerate(), reader.getnchannels(), reader.getsampwidth()) == (24_000, 1, 2)
        assert reader.getnframes() == 3 * PIECE_SAMPLES
    assert response.headers["X-Seed"] == "1234" and response.headers["X-Audio-Seconds"] == "0.300"
    assert float(response.headers["X-Synthesis-Seconds"]) >= 0
    (req,) = engine.requests
    assert (req.text, req.voice.name, req.nfe, req.speed, req.seed, req.stream) == (
        "hello world",
        "default",
        12,
        1.2,
        1234,
        False,
    )
    assert req.deadline_s == Config().limits.request_timeout_s


async def test_same_seed_gives_identical_pcm(client: TestClient) -> None:
    bodies = [
        await (await client.post("/v1/tts", json={"text": "a", "seed": 9, "format": "pcm"})).read()
        for _ in range(2)
    ]
    assert bodies[0] == bodies[1] and len(bodies[0]) == 3 * PIECE_SAMPLES * 2


async def test_pcm_format_has_l16_content_type(client: TestClient) -> None:
    response = await client.post("/v1/tts", json={"text": "a", "format": "pcm"})
    assert response.headers["Content-Type"] == "audio/L16;rate=24000"
    assert response.headers["X-Audio-Format"].startswith("s16le")


async def test_streamed_wav_is_chunked_with_placeholder_header_then_pcm(client: TestClient) -> None:
    buffered = await (await client.post("/v1/tts", json={"text": "a", "seed": 5, "format": "pcm"})).read()
    response = await client.post("/v1/tts", json={"text": "a", "seed": 5, "stream": True})
    assert response.status == 200 and response.headers["Transfer-Encoding"] == "chunked"
    body = await response.read()
    assert body[:4] == b"RIFF" and body[4:8] == b"\xff\xff\xff\xff" and body[44:] == buffered


async def test_streamed_pcm_has_no_header(client: TestClient, engine: EngineDouble) -> None:
    response = await client.post("/v1/tts", json={"text": "a", "stream": True, "format": "pcm"})
    assert len(await response.read()) == 3 * PIECE_SAMPLES * 2 and engine.requests[0].stream


async def test_openai_speech_route(client: TestClient, engine: EngineDouble) -> None:
    response = await client.post(
        "/v1/audio/speech",
        json={"model": "tts-1", "input": "hi", "voice": "default", "response_format": "wav"},
    )
    assert response.status == 200 and (await response.read())[:4] == b"RIFF"
    assert engine.requests[0].nfe == Config().engine.nfe


async def test_openai_unknown_voice_is_404(client: TestClient) -> None:
    response = await client.post("/v1/audio/speech", json={"model": "tts-1", "input": "hi", "voice": "alloy"})
    assert response.status == 404 and await error_of(response) == "voice_not_found"


async def test_openai_mp3_is_422(client: TestClient) -> None:
    response = await client.post("/v1/audio/speech", json={"input": "hi", "response_format": "mp3"})
    assert response.status == 422 and "wav, pcm" in (await response.json())["error"]["message"]


@pytest.mark.parametrize(
    "error,status,code,retry",
    [
        (EngineUnavailable("restarting", 3.0), 503, "engine_unavailable", "3"),
        (SynthesisFailed("worker died", 2.0), 503, "synthesis_failed", "2"),
        (QueueFull(64, 2.0), 429, "queue_full", "2"),
        (DeadlineExceeded("too late"), 504, "deadline_exceeded", None),
        (SynthesisRejected("cannot tokenize"), 422, "synthesis_rejected", None),
        (RuntimeError("secret internals /home/x"), 500, "internal", None),
    ],
)
async def test_engine_errors_map_to_status_and_json(
    tmp_path: Path, error: Exception, status: int, code: str, retry: str | None
) -> None:
    engine = EngineDouble(fail_with=error)
    async with TestClient(TestServer(create_app(make_deps(tmp_path, engine)))) as client:
        for stream in (False, True):
            response = await client.post("/v1/tts", json={"text": "a", "stream": stream})
            assert response.status == status and await error_of(response) == code
            assert response.headers.get("Retry-After") == retry
            assert "Traceback" not in await response.text() and "secret" not in await response.text()
        assert metrics_of(client).counters()["errors"] == {code: 2}


async def test_failure_mid_stream_truncates_the_body(tmp_path: Path) -> None:
    engine = EngineDouble(fail_with=SynthesisFailed("worker died"), fail_after=2)
    async with TestClient(TestServer(create_app(make_deps(tmp_path, engine)))) as client:
        response = await client.post("/v1/tts", json={"text": "a", "stream": True, "format": "pcm"})
        assert response.status == 200
        with pytest.raises(aiohttp.ClientPayloadError):
            await response.read()
        assert metrics_of(client).counters()["errors"] == {"synthesis_failed": 1}
        assert engine.closed == [True]
        assert (await client.get("/healthz")).status == 200  # the server carries on


async def test_client_disconnect_mid_stream_ends_the_engine_job(tmp_path: Path) -> None:
    engine = EngineDouble(pieces=200, delay_s=0.01)
    async with TestClient(TestServer(create_app(make_deps(tmp_path, engine)))) as client:
        response = await client.post("/v1/tts", json={"text": "a", "stream": True, "format": "pcm"})
        assert len(await response.content.readexactly(PIECE_SAMPLES * 2)) == PIECE_SAMPLES * 2
        response.close()
        for _ in range(200):
            if engine.closed:
                break
            await asyncio.sleep(0.01)
        assert engine.closed == [True] and engine.yielded < 100  # stopped early, not run to the end
        assert metrics_of(client).counters()["errors"] == {}  # the client's choice, not our failure


# --- request validation --------------------------------------------------------------------------
async def test_bad_json_is_400(client: TestClient) -> None:
    response = await client.post("/v1/tts", data=b"{oops", headers={"Content-Type": "application/json"})
    assert response.status == 400 and await error_of(response) == "bad_json"


async def test_wrong_content_type_is_415(client: TestClient) -> None:
    response = await client.post("/v1/tts", data=b"text=hi", headers={"Content-Type": "text/plain"})
    assert response.status == 415 and await error_of(response) == "unsupported_media_type"


async def test_body_over_max_body_bytes_is_413(client: TestClient) -> None:
    response = await client.post("/v1/tts", json={"text": "a", "pad": "x" * 70_000})
    assert response.status == 413 and await error_of(response) == "body_too_large"


async def test_chunked_body_over_the_limit_is_413(client: TestClient) -> None:
    async def body() -> AsyncIterator[bytes]:
        yield b'{"text": "' + b"x" * 70_000 + b'"}'

    response = await client.post("/v1/tts", data=body(), headers={"Content-Type": "application/json"})
    assert response.status == 413


async def test_unknown_route_is_404_and_wrong_method_405_as_json(client: TestClient) -> None:
    missing = await client.get("/v2/nothing")
    assert missing.status == 404 and await error_of(missing) == "not_found"
    wrong = await client.get("/v1/tts")
    assert (
        wrong.status == 405
        and await error_of(wrong) == "method_not_allowed"
        and "POST" in wrong.headers["Allow"]
    )


async def test_requests_are_logged_without_their_text(client: TestClient) -> None:
    secret = "my very private sentence"
    with capture_logs() as logs:
        await client.post("/v1/tts", json={"text": secret})
    (entry,) = [log for log in logs if log["event"] == "request"]
    assert (entry["route"], entry["status"], entry["text_chars"], entry["log_level"]) == (
        "/v1/tts",
        200,
        len(secret),
        "info",
    )
    assert entry["duration_ms"] >= 0
    assert all(secret not in repr(log) for log in logs if log["log_level"] != "debug")



@pytest.mark.parametrize(("level", "logged"), [(logging.DEBUG, True), (logging.INFO, False)])
async def test_the_text_is_logged_only_at_debug(client: TestClient, level: int, logged: bool) -> None:
    """The stdlib logger's level decides, before the structlog event is even built."""
    logger = logging.getLogger("ishowttsd.api.routes_tts")
    old = logger.level
    logger.setLevel(level)
    try:
        with capture_logs() as logs:
            await client.post("/v1/tts", json={"text": "say this"})
    finally:
        logger.setLevel(old)
    texts = [log["text"] for log in logs if log["event"] == "synthesis_text"]
    assert texts == (["say this"] if logged else [])

# --- voices --------------------------------------------------------------------------------------
def voice_form(name: str, text: str, audio: bytes, filename: str = "ref.wav") -> aiohttp.FormData:
    form = aiohttp.FormData()
    form.add_field("name", name)
    form.add_field("text", text)
    form.add_field("audio", audio, filename=filename, content_type="application/octet-stream")
    return form


async def test_voice_lifecycle(client: TestClient, engine: EngineDouble) -> None:
    added = await client.post(
        "/v1/voices", data=voice_form("alice", "Hello there.", sine_bytes(2.0, fmt="FLAC"))
    )
    assert added.status == 201 and (await added.json())["name"] == "alice"
    listed = await (await client.get("/v1/voices")).json()
    assert [voice["name"] for voice in listed["voices"]] == ["default", "alice"]
    one = await (await client.get("/v1/voices/alice")).json()
    assert (one["ref_text"], one["sample_rate"], one["builtin"]) == ("Hello there.", 16_000, False)
    await client.post("/v1/tts", json={"text": "a", "voice": "alice"})
    assert engine.requests[0].voice.ref_text == "Hello there."
    deleted = await client.delete("/v1/voices/alice")
    assert deleted.status == 200 and (await client.get("/v1/voices/alice")).status == 404


async def test_synthesis_reads_a_voice_once_then_serves_it_from_memory_until_it_changes(
    client: TestClient, engine: EngineDouble, monkeypatch: pytest.MonkeyPatch
) -> None:
    await client.post("/v1/voices", data=voice_form("alice", "Hello there.", sine_bytes(2.0)))
    store = client.server.app[DEPS].voices
    reads: list[str] = []
    real_get = store.get
    monkeypatch.setattr(store, "get", lambda name: reads.append(name) or real_get(name))
    for _ in range(3):
        assert (await client.post("/v1/tts", json={"text": "a", "voice": "alice"})).status == 200
    assert reads == ["alice"]
    await client.post("/v1/voices", data=voice_form("alice", "Replaced.", sine_bytes(2.5)))
    assert (await client.post("/v1/tts", json={"text": "a", "voice": "alice"})).status == 200
    assert reads == ["alice", "alice"] and engine.requests[-1].voice.ref_text == "Replaced."
    assert (await client.post("/v1/tts", json={"text": "a", "voice": "nobody"})).status == 404


@pytest.mark.parametrize(
    "name,text,audio,status,code",
    [
        ("alice", "hi", b"garbage" * 100, 415, "unsupported_audio"),
        ("alice", "hi", sine_bytes(0.5), 422, "invalid_voice_duration"),
        ("alice", "hi", sine_bytes(20.0), 422, "invalid_voice_duration"),
        ("alice", "", sine_bytes(2.0), 400, "invalid_transcript"),
        ("../etc", "hi", sine_bytes(2.0), 400, "invalid_voice_name"),
        ("default", "hi", sine_bytes(2.0), 400, "reserved_voice_name"),
        ("con", "hi", sine_bytes(2.0), 400, "reserved_voice_name"),
    ],
)
async def test_bad_voice_uploads(
    client: TestClient, name: str, text: str, audio: bytes, status: int, code: str
) -> None:
    response = await client.post("/v1/voices", data=voice_form(name, text, audio))
    assert response.status == status and await error_of(response) == code
    assert len((await (await client.get("/v1/voices")).json())["voices"]) == 1


async def test_duration_error_names_the_measured_duration(client: TestClient) -> None:
    response = await client.post("/v1/voices", data=voice_form("alice", "hi", sine_bytes(20.0)))
    assert "20.00 s" in (await response.json())["error"]["message"]


async def test_voice_upload_over_max_upload_bytes_is_413(tmp_path: Path) -> None:
    config = replace(Config(), limits=LimitsConfig(max_upload_bytes=32_768))
    deps = make_deps(tmp_path, EngineDouble(), config)
    async with TestClient(TestServer(create_app(deps))) as client:
        response = await client.post("/v1/voices", data=voice_form("alice", "hi", sine_bytes(2.0)))
        assert response.status == 413 and await error_of(response) == "body_too_large"


async def test_voice_upload_needs_multipart_and_all_fields(client: TestClient) -> None:
    as_json = await client.post("/v1/voices", json={"name": "a"})
    assert as_json.status == 415
    form = aiohttp.FormData()
    form.add_field("name", "alice")
    form.add_field("audio", sine_bytes(2.0), filename="a.wav")
    missing = await client.post("/v1/voices", data=form)
    assert missing.status == 400 and "text" in (await missing.json())["error"]["message"]


async def test_deleting_default_is_400_and_unknown_is_404(client: TestClient) -> None:
    assert (await client.delete("/v1/voices/default")).status == 400
    assert (await client.delete("/v1/voices/nobody")).status == 404


# --- operations ----------------------------------------------------------------------------------
async def test_healthz_and_readyz_follow_the_engine(client: TestClient, engine: EngineDouble) -> None:
    assert await (await client.get("/healthz")).json() == {"status": "alive"}
    assert (await client.get("/readyz")).status == 200
    engine.ready = False
    not_ready = await client.get("/readyz")
    assert not_ready.status == 503 and await error_of(not_ready) == "not_ready"
    assert (await client.get("/healthz")).status == 200


async def test_status_document(client: TestClient) -> None:
    await client.post("/v1/tts", json={"text": "a"})
    status = await (await client.get("/v1/status")).json()
    assert (
        status["version"] and status["uptime_s"] >= 5.0 and status["config_path"].endswith("ishowttsd.toml")
    )
    assert status["engine"] == {"state": "ready", "model": "double", "path": "/x"}
    assert status["counters"]["requests"]["/v1/tts"] == {"200": 1}
    assert status["jobs"] == {"backup": "ok"}


async def test_metrics_route_exposes_the_app_registry(client: TestClient) -> None:
    await client.post("/v1/tts", json={"text": "a"})
    response = await client.get("/metrics")
    text = await response.text()
    assert response.status == 200 and response.headers["Content-Type"].startswith("text/plain")
    assert 'tts_requests_total{route="/v1/tts",status="200"} 1.0' in text
    assert 'tts_synthesis_duration_seconds_count{route="/v1/tts"} 1.0' in text
    assert 'tts_audio_seconds_total{route="/v1/tts"} 0.3' in text
    assert 'tts_time_to_first_audio_seconds_count{route="/v1/tts"} 1.0' in text


async def test_route_labels_use_patterns_not_paths(client: TestClient) -> None:
    await client.get("/v1/voices/someone")
    await client.get("/no/such/path")
    requests = metrics_of(client).counters()["requests"]
    assert requests["/v1/voices/{name}"] == {"404": 1} and requests["unmatched"] == {"404": 1}


async def test_bearer_token_is_required_when_configured(tmp_path: Path) -> None:
    app = create_app(make_deps(tmp_path, EngineDouble()), require_token="s3cret")
    async with TestClient(TestServer(app)) as client:
        denied = await client.get("/v1/status")
        assert denied.status == 401 and await error_of(denied) == "unauthorized"
        assert (await client.get("/v1/status", headers={"Authorization": "Bearer wrong"})).status == 401
        assert (await client.get("/v1/status", headers={"Authorization": "Bearer s3cret"})).status == 200


async def test_client_max_size_covers_the_upload_limit(client: TestClient) -> None:
    limits = Config().limits
    assert client.server.app._client_max_size == max(limits.max_body_bytes, limits.max_upload_bytes)
