"""Reloader on a real Daemon (built, never started: no worker process): what a SIGHUP reload applies.

The settings the daemon's parts were built with at boot (the engine's limits, the watchdog's
settings, the voice store's limits, the backup count) take their new values; restart-only keys
keep their running values and are reported; a rollback puts every old value back.
"""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from aiohttp.test_utils import TestClient, TestServer

from ishowttsd.api.audio import VoiceAudioError
from ishowttsd.config import load_config
from ishowttsd.daemon import Daemon
from ishowttsd.daemon_parts import engine_limits, supervisor_settings
from ishowttsd.engine.client import SynthesisRequest
from ishowttsd.supervisor import Supervisor, SupervisorSettings


def write_toml(path: Path, **sections: dict[str, Any]) -> None:
    base: dict[str, dict[str, Any]] = {
        "daemon": {"socket": str(path.parent / "d.sock"), "state_dir": str(path.parent / "state"),
                   "log_dir": str(path.parent / "log")},
        "engine": {"model": "tiny"},
        "limits": {"request_timeout_s": 1.0},
        "gpu": {"backend": "none", "lock_clocks": False},
        "jobs": {"enabled": False},
    }
    for name, keys in sections.items():
        base.setdefault(name, {}).update(keys)
    lines = [f"[{name}]\n" + "".join(f"{key} = {toml_value(value)}\n" for key, value in keys.items())
             for name, keys in base.items()]
    path.write_text("".join(lines))


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return f'"{value}"' if isinstance(value, str) else str(value)


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    path = tmp_path / "ishowttsd.toml"
    write_toml(path)
    built = Daemon(load_config(path), path, lambda: load_config(path))
    yield built
    built.jobs.close()


def sine_wav(seconds: float, rate: int = 24_000) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    buffer = io.BytesIO()
    sf.write(buffer, 0.3 * np.sin(2 * np.pi * 330.0 * t), rate, format="WAV", subtype="FLOAT")
    return buffer.getvalue()


async def reload_with(running: Daemon, /, **sections: dict[str, Any]) -> dict[str, Any]:
    """Write the test config with `sections` changed, reload it as SIGHUP does; the reload's result."""
    assert running.config_path is not None
    write_toml(running.config_path, **sections)
    await running.reload()
    return running.reloader.snapshot()


async def test_a_lowered_max_queue_answers_429_with_the_new_retry_after(daemon: Daemon) -> None:
    assert daemon.engine.limits.max_queue == 64
    result = await reload_with(daemon, limits={"max_queue": 1, "retry_after_s": 7})
    assert result["result"] == "applied" and result["needs_restart"] == []
    daemon.engine.state = "starting"  # as during its boot: requests are admitted, no worker serves yet
    daemon.engine.admission.admit(SynthesisRequest("Waiting.", daemon.voices.get("default"), 8, 1.0, 1),
                                  time.monotonic())
    async with TestClient(TestServer(daemon.build_app())) as client:
        answer = await client.post("/v1/tts", json={"text": "One too many."})
        assert answer.status == 429, await answer.text()  # unapplied (64), it waits for its 1 s deadline: 504
        assert answer.headers["Retry-After"] == "7"


async def test_engine_limits_watchdog_and_backups_take_the_new_values(daemon: Daemon) -> None:
    changed = {"engine": {"heartbeat_timeout_s": 40.0, "max_restarts": 2, "boot_timeout_s": 120.0},
               "watchdog": {"canary_interval_s": 10.0, "canary_max_age_s": 45.0, "max_failed_recoveries": 5},
               "jobs": {"backup_keep": 4}}
    assert (await reload_with(daemon, **changed))["result"] == "applied"
    assert daemon.engine.limits == engine_limits(daemon.config)
    assert (daemon.engine.limits.heartbeat_timeout_s, daemon.engine.limits.max_restarts) == (40.0, 2)
    settings = daemon.supervisor.settings
    assert (settings.worker_max_age_s, settings.boot_grace_s, settings.canary_interval_s,
            settings.canary_max_age_s, settings.max_failed_recoveries) == (80.0, 120.0, 10.0, 45.0, 5)
    assert daemon.reloader.store is not None and daemon.reloader.store.keep == 4


async def test_voice_limits_apply_to_the_next_upload(daemon: Daemon) -> None:
    daemon.voices.add("before", sine_wav(3.0), "Three seconds.")
    await reload_with(daemon, limits={"max_voice_s": 2.0})
    with pytest.raises(VoiceAudioError, match="1-2 s"):
        daemon.voices.add("after", sine_wav(3.0), "Three seconds.")


async def test_the_canary_follows_the_reloaded_default_voice(daemon: Daemon) -> None:
    daemon.voices.add("alice", sine_wav(3.0), "Three seconds.")
    await reload_with(daemon, voices={"default_voice": "alice"})
    assert daemon.supervisor.canary_request().voice.name == "alice"


async def test_restart_only_keys_are_reported_and_keep_their_running_values(daemon: Daemon) -> None:
    result = await reload_with(daemon, gpu={"sm_clock_mhz": 1500},
                               daemon={"fault_injection": True}, limits={"max_text_chars": 20})
    assert result["result"] == "applied"
    assert result["needs_restart"] == ["daemon.fault_injection", "gpu.sm_clock_mhz"]
    assert (daemon.config.gpu.sm_clock_mhz, daemon.config.daemon.fault_injection) == (0, False)
    assert not daemon.engine.spec.fault_injection
    assert daemon.config.limits.max_text_chars == 20  # the rest is applied


async def test_a_body_limit_above_the_apis_ceiling_is_capped_and_reported(daemon: Daemon) -> None:
    ceiling = daemon.reloader.body_ceiling  # max(max_body_bytes, max_upload_bytes) at boot: 8 MiB
    result = await reload_with(daemon, limits={"max_body_bytes": ceiling * 2, "max_upload_bytes": ceiling * 4})
    assert result["needs_restart"] == ["limits.max_body_bytes"]
    assert daemon.config.limits.max_body_bytes == ceiling
    assert daemon.config.limits.max_upload_bytes == ceiling * 4  # uploads are streamed: not bounded by it


async def test_a_rolled_back_reload_restores_the_old_limits_and_settings(daemon: Daemon,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    old_limits, old_settings = daemon.engine.limits, daemon.supervisor.settings

    async def recycle_fails(reason: str, overlap: bool = True, worker: int | None = None) -> bool:
        return False

    monkeypatch.setattr(daemon.engine, "recycle", recycle_fails)  # the new engine settings do not boot
    result = await reload_with(daemon, engine={"crossfade_ms": 80, "max_restarts": 1},
                               limits={"max_queue": 1, "max_voice_s": 2.0},
                               watchdog={"canary_interval_s": 5.0, "canary_max_age_s": 20.0},
                               jobs={"backup_keep": 3})
    assert result["result"] == "rolled_back"
    assert daemon.engine.limits == old_limits and daemon.engine.admission.limits == old_limits
    assert daemon.supervisor.settings == old_settings == supervisor_settings(daemon.config)
    assert daemon.reloader.store is not None and daemon.reloader.store.keep == 30
    daemon.voices.add("long", sine_wav(3.0), "Three seconds.")  # max_voice_s is 15 s again


class OneSlot:
    index = 0

    def serving(self) -> None:
        return None


class CountingEngine:
    """Just what the supervisor's canary loop touches: one ready slot, each synthesis counted."""

    state = "ready"

    def __init__(self) -> None:
        self.slots, self.canaries = [OneSlot()], 0

    def is_ready(self) -> bool:
        return True

    async def synthesize(self, request: SynthesisRequest) -> AsyncIterator[bytes]:
        self.canaries += 1
        yield b""


class QuietNotifier:
    def watchdog_interval(self) -> float | None:
        return None

    def watchdog(self) -> None: ...

    def status(self, text: str) -> None: ...


async def test_a_shorter_canary_interval_takes_effect_without_waiting_out_the_old_one() -> None:
    engine = CountingEngine()
    supervisor = Supervisor(engine, QuietNotifier(), SupervisorSettings(canary_interval_s=3600.0),  # type: ignore[arg-type]
                            lambda: SynthesisRequest("Canary.", None, 8, 1.0, 1), lambda: "")  # type: ignore[arg-type]
    loop = asyncio.create_task(supervisor.run_loop_tasks())
    try:
        await asyncio.sleep(0.1)
        assert engine.canaries == 1  # the first one, then an hour's pause
        supervisor.set_settings(SupervisorSettings(canary_interval_s=0.05))
        await asyncio.sleep(0.5)
        assert engine.canaries >= 3
    finally:
        loop.cancel()
        await asyncio.gather(loop, return_exceptions=True)
