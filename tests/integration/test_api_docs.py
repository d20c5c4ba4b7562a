"""Every curl example in docs/api.md runs as written against the real daemon."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from daemon_harness import DaemonProcess

from ishowttsd.voices import find_default_reference

DOCS = Path(__file__).resolve().parents[2] / "docs" / "api.md"


def curl_examples() -> list[str]:
    blocks = re.findall(r"```sh\n(.*?)```", DOCS.read_text(), flags=re.S)
    return [line for block in blocks for line in block.splitlines() if line.startswith("curl ")]


def test_docs_have_curl_examples_for_the_main_routes() -> None:
    examples = "\n".join(curl_examples())
    for route in ("/v1/tts", "/v1/audio/speech", "/v1/voices", "/healthz", "/readyz", "/v1/status", "/metrics"):
        assert route in examples, route


def test_every_curl_example_works(shared_daemon: DaemonProcess, tmp_path: Path) -> None:
    env = {"SOCK": shared_daemon.socket, "REF_WAV": str(find_default_reference()), "PATH": "/usr/bin:/bin"}
    for line in curl_examples():
        result = subprocess.run(["bash", "-c", line.replace("curl ", "curl --fail-with-body ", 1)],
                                cwd=tmp_path, env=env, capture_output=True, timeout=120)
        assert result.returncode == 0, (line, result.stdout[-500:], result.stderr[-500:])
    assert (tmp_path / "hello.wav").read_bytes()[:4] == b"RIFF"
