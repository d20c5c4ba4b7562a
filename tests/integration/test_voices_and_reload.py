"""Voice upload/list/delete through the real daemon, and SIGHUP reloads."""

from __future__ import annotations

import io
import json
import signal
import time
import uuid
from pathlib import Path

import numpy as np
import soundfile
from daemon_harness import DaemonProcess, request, start_daemon

from ishowttsd.voices import find_default_reference


def multipart(fields: dict[str, str], audio: bytes, filename: str = "ref.wav") -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
             for k, v in fields.items()]
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="audio"; filename="{filename}"\r\n'
                 f"Content-Type: application/octet-stream\r\n\r\n".encode() + audio + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def upload(daemon: DaemonProcess, name: str, audio: bytes, text: str = "Hello, this is my voice."):
    body, content_type = multipart({"name": name, "text": text}, audio)
    return request(daemon.socket, "POST", "/v1/voices", body, {"Content-Type": content_type})


def tone(seconds: float, rate: int = 24000) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    buffer = io.BytesIO()
    soundfile.write(buffer, 0.3 * np.sin(2 * np.pi * 220 * t), rate, format="WAV")
    return buffer.getvalue()


def test_voice_lifecycle_and_synthesis_with_it(shared_daemon: DaemonProcess) -> None:
    speech = find_default_reference().read_bytes()
    created = upload(shared_daemon, "streamer", speech, "Some call me nature, others call me mother nature.")
    assert created.status == 201, created.body
    names = [v["name"] for v in request(shared_daemon.socket, "GET", "/v1/voices").json()["voices"]]
    assert {"default", "streamer"} <= set(names)
    reply = request(shared_daemon.socket, "POST", "/v1/tts", {"text": "Using my own voice.", "voice": "streamer"})
    assert reply.status == 200
    assert request(shared_daemon.socket, "DELETE", "/v1/voices/streamer").status in (200, 204)
    missing = request(shared_daemon.socket, "POST", "/v1/tts", {"text": "Gone.", "voice": "streamer"})
    assert missing.status == 404


def test_bad_voice_names_audio_and_sizes_are_rejected(shared_daemon: DaemonProcess) -> None:
    assert upload(shared_daemon, "../etc", tone(3)).status == 400
    assert upload(shared_daemon, "default", tone(3)).status == 400
    assert upload(shared_daemon, "noise", b"not audio at all" * 100).status == 415
    assert upload(shared_daemon, "short", tone(0.3)).status == 422
    assert upload(shared_daemon, "long", tone(20)).status == 422
    assert upload(shared_daemon, "empty", tone(3), text="").status in (400, 422)
    huge = upload(shared_daemon, "huge", b"\0" * (9 * 1024 * 1024))
    assert huge.status == 413
    state = Path(shared_daemon.config).parent / "state" / "voices"
    assert sorted(p.name for p in state.iterdir() if not p.name.startswith(".")) == []


def test_reload_applies_new_limits_and_rejects_a_broken_config(fresh_daemon: DaemonProcess) -> None:
    config = fresh_daemon.config
    original = config.read_text()
    config.write_text(original.replace("[jobs]", "[limits]\nmax_text_chars = 20\n[gpu]\ncommand_retries = 5\n[jobs]"))
    fresh_daemon.signal(signal.SIGHUP)
    assert wait_reload(fresh_daemon, "applied")["needs_restart"] == ["gpu.command_retries"]  # the backend's
    assert request(fresh_daemon.socket, "POST", "/v1/tts", {"text": "x" * 30}).status in (400, 422)
    config.write_text(original + "\n[limits]\nmax_text_chars = -5\n")
    fresh_daemon.signal(signal.SIGHUP)
    result = wait_reload(fresh_daemon, "rejected")
    assert "max_text_chars" in result["error"] and str(config) in result["error"]
    assert request(fresh_daemon.socket, "POST", "/v1/tts", {"text": "Still up."}).status == 200
    assert request(fresh_daemon.socket, "POST", "/v1/tts", {"text": "x" * 30}).status in (400, 422)


def test_reload_of_engine_settings_recycles_the_worker(fresh_daemon: DaemonProcess) -> None:
    old_pid = fresh_daemon.status()["engine"]["pid"]
    text = fresh_daemon.config.read_text().replace('model = "tiny"', 'model = "tiny"\ncrossfade_ms = 80')
    fresh_daemon.config.write_text(text)
    fresh_daemon.signal(signal.SIGHUP)
    wait_reload(fresh_daemon, "applied", timeout_s=300)
    engine = fresh_daemon.status()["engine"]
    assert engine["pid"] != old_pid and engine["state"] == "ready"


def wait_reload(daemon: DaemonProcess, result: str, timeout_s: float = 60) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        reload = daemon.status().get("reload", {})
        if reload.get("result") == result:
            return reload
        time.sleep(0.2)
    raise AssertionError(json.dumps(daemon.status().get("reload")))


def test_reload_of_a_broken_engine_rolls_back(tmp_path: Path, models_dir: Path) -> None:
    daemon = start_daemon(tmp_path, models_dir)
    try:
        good = daemon.config.read_bytes()
        bogus = tmp_path / "nope.pt"
        daemon.config.write_text(good.decode().replace('model = "tiny"', f'model = "{bogus}"'))
        daemon.signal(signal.SIGHUP)
        wait_reload(daemon, "rolled_back", timeout_s=300)
        assert daemon.config.read_bytes() == good  # rollback restored the file byte for byte
        assert request(daemon.socket, "POST", "/v1/tts", {"text": "Still serving."}).status == 200
    finally:
        daemon.stop()
