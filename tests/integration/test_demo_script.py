"""The README's first command, `./scripts/demo.sh`, does the main job: daemon up, a line to a WAV, daemon down."""

from __future__ import annotations

import subprocess
from pathlib import Path

import psutil
import soundfile

REPO = Path(__file__).resolve().parents[2]


def test_demo_script_speaks_a_line_to_a_wav_and_stops_the_daemon(tmp_path: Path) -> None:
    out = tmp_path / "hello.wav"
    before = {p.pid for p in psutil.process_iter()}
    done = subprocess.run(["./scripts/demo.sh", str(out), "Hello from the test."], cwd=REPO,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    info = soundfile.info(str(out))
    assert (info.samplerate, info.channels, info.subtype) == (24000, 1, "PCM_16") and info.duration > 0.5, info
    assert "daemon stopped (exit 0)" in done.stdout and "engine    ready" in done.stdout, done.stdout[-2000:]
    started = [p for p in psutil.process_iter(["pid", "cmdline"])
               if p.pid not in before and "ishowttsd" in " ".join(p.info["cmdline"] or [])]
    # the fork server exits on its own once the daemon's end closes its pipe: give it a moment
    _, left = psutil.wait_procs(started, timeout=10)
    assert left == [], [p.info for p in left]
