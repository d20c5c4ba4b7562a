"""Real synthesis through the real daemon (tiny model) over its Unix socket."""

from __future__ import annotations

import io

import numpy as np
import soundfile
from daemon_harness import DaemonProcess, request

SHORT = "Hello there."
LONG = ("Hello there, this is a much longer line that the chat bot wants spoken aloud right now. "
        "And a second sentence follows it, so the engine splits the text into chunks.")


def tts(daemon: DaemonProcess, **body: object):
    return request(daemon.socket, "POST", "/v1/tts", {"text": SHORT, **body})


def decode(wav: bytes) -> tuple[np.ndarray, int]:
    audio, rate = soundfile.read(io.BytesIO(wav), dtype="float32")
    return audio, rate


def test_tts_returns_24khz_mono_wav_that_is_not_silent(shared_daemon: DaemonProcess) -> None:
    reply = tts(shared_daemon, seed=1)
    assert reply.status == 200, reply.body
    assert reply.headers["content-type"] == "audio/wav"
    info = soundfile.info(io.BytesIO(reply.body))
    assert (info.samplerate, info.channels, info.subtype) == (24000, 1, "PCM_16")
    audio, _ = decode(reply.body)
    assert float(np.sqrt(np.mean(audio**2))) > 1e-3
    assert abs(float(reply.headers["x-audio-seconds"]) - len(audio) / 24000) < 1e-3


def test_audio_length_follows_the_text(shared_daemon: DaemonProcess) -> None:
    short, _ = decode(tts(shared_daemon, seed=1).body)
    long, _ = decode(tts(shared_daemon, text=LONG, seed=1).body)
    assert len(long) > 3 * len(short)


def test_same_seed_gives_identical_audio_and_another_seed_does_not(shared_daemon: DaemonProcess) -> None:
    first, second, other = (tts(shared_daemon, seed=s).body for s in (7, 7, 8))
    assert first == second
    assert first != other


def test_random_seed_is_reported_and_reproduces(shared_daemon: DaemonProcess) -> None:
    reply = tts(shared_daemon)
    seed = int(reply.headers["x-seed"])
    assert tts(shared_daemon, seed=seed).body == reply.body


def test_pcm_format_is_the_wav_payload(shared_daemon: DaemonProcess) -> None:
    wav = tts(shared_daemon, seed=3).body
    pcm = tts(shared_daemon, seed=3, format="pcm").body
    audio, _ = decode(wav)
    assert len(pcm) == 2 * len(audio)
    assert wav.endswith(pcm)


def test_streaming_returns_the_same_audio_in_chunks(shared_daemon: DaemonProcess) -> None:
    whole = tts(shared_daemon, text=LONG, seed=5, format="pcm").body
    streamed = tts(shared_daemon, text=LONG, seed=5, format="pcm", stream=True)
    assert streamed.status == 200
    assert streamed.headers.get("transfer-encoding") == "chunked"
    assert streamed.body == whole


def test_openai_speech_route(shared_daemon: DaemonProcess) -> None:
    reply = request(shared_daemon.socket, "POST", "/v1/audio/speech",
                    {"model": "tts-1", "input": SHORT, "voice": "default", "response_format": "wav"})
    assert reply.status == 200, reply.body
    audio, rate = decode(reply.body)
    assert rate == 24000 and len(audio) > 0


def test_openai_route_rejects_unsupported_format(shared_daemon: DaemonProcess) -> None:
    reply = request(shared_daemon.socket, "POST", "/v1/audio/speech",
                    {"model": "tts-1", "input": SHORT, "voice": "default", "response_format": "mp3"})
    assert reply.status == 422
    assert "wav" in reply.json()["error"]["message"]


def test_limits_and_bad_json_give_json_errors(shared_daemon: DaemonProcess) -> None:
    too_long = tts(shared_daemon, text="a" * 5000)
    bad_json = request(shared_daemon.socket, "POST", "/v1/tts", b"{not json",
                       {"Content-Type": "application/json"})
    huge = request(shared_daemon.socket, "POST", "/v1/tts", b"x" * 200_000, {"Content-Type": "application/json"})
    assert too_long.status in (400, 422) and "error" in too_long.json()
    assert bad_json.status == 400 and bad_json.json()["error"]["code"]
    assert huge.status == 413


def test_user_text_is_not_logged_at_info(tmp_path, models_dir) -> None:
    from daemon_harness import start_daemon

    daemon = start_daemon(tmp_path, models_dir, logging={"format": "json", "level": "info"})
    try:
        secret = "purple elephant secret phrase"
        assert tts(daemon, text=secret).status == 200
    finally:
        daemon.stop()
    assert "purple elephant" not in daemon.log()
    assert '"text_chars": 29' in daemon.log() or '"text_chars":29' in daemon.log()


def test_status_reports_engine_and_counters(shared_daemon: DaemonProcess) -> None:
    status = shared_daemon.status()
    assert status["engine"]["state"] == "ready"
    assert status["engine"]["model"] == "tiny"
    assert isinstance(status["engine"]["pid"], int)
    assert status["config_path"].endswith("ishowttsd.toml")
    assert request(shared_daemon.socket, "GET", "/healthz").status == 200
