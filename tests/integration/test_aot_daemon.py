"""compile_scope "aot" in the real daemon (tiny model, CPU): built on the first boot, loaded on the next.

The first daemon exports and AOT-compiles the DiT block and input embedding (a C++ build here),
checks each package in a separate process and serves; the second daemon, on the same state dir,
loads the same files (not rebuilt, not re-checked) and serves the same audio for the same seed.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from daemon_harness import request, start_daemon

pytestmark = pytest.mark.slow

ENGINE = {"compile": True, "compile_scope": "aot", "compile_backend": "inductor", "max_batch": 1,
          "max_frames": 576, "min_frames": 512}
LINE = {"text": "Hello chat.", "seed": 11, "format": "pcm"}


def packages(state: Path) -> dict[Path, int]:
    return {path: path.stat().st_mtime_ns for path in (state / "models" / "compile" / "aot").glob("*.pt2*")}


def boot_and_speak(directory: Path, models_dir: Path) -> tuple[dict, bytes]:
    daemon = start_daemon(directory, models_dir, engine=ENGINE)
    try:
        engine = daemon.status()["engine"]
        reply = request(daemon.socket, "POST", "/v1/tts", LINE)
        assert reply.status == 200, reply.body[:500]
    finally:
        assert daemon.stop() == 0, daemon.log()[-3000:]
    return engine, reply.body


def test_aot_packages_are_built_once_then_loaded_by_the_next_boot(tmp_path: Path, models_dir: Path) -> None:
    first, audio = boot_and_speak(tmp_path, models_dir)
    assert first["compiled"] is True and first["compile_error"] == "" and first["compile_note"] == "", first
    built = packages(tmp_path / "state")
    suffixes = sorted(path.suffix for path in built)
    assert suffixes == [".ok", ".ok", ".pt2", ".pt2"], built  # block + input embedding, each checked once
    second, again = boot_and_speak(tmp_path, models_dir)
    assert second["compiled"] is True and second["compile_note"] == "", second
    assert packages(tmp_path / "state") == built  # loaded as they were: no rebuild, no new check
    assert len(audio) > 10_000 and again == audio
