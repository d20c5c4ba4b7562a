"""Corrupt or invalid config on SIGHUP: rejected with a precise error, the old config keeps serving,
backups stay intact, and a config that breaks the engine is rolled back byte for byte.

tests/integration/test_voices_and_reload.py covers one bad value and one bogus model path; this
module covers the ways a file really gets damaged (cut short, not UTF-8, typo'd key, wrong type,
deleted, emptied) and checks the backups themselves.
"""

from __future__ import annotations

import hashlib
import json
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from reliability_support import DaemonProcess, request, start_daemon, tts, wait_for

LIMIT = 40  # [limits] max_text_chars applied by a good reload before the damage starts
pytestmark = pytest.mark.slow


def reload_and_wait(daemon: DaemonProcess, timeout_s: float = 60.0) -> dict[str, object]:
    """SIGHUP, then the reload result that is newer than the one before."""
    before = daemon.status().get("reload", {}).get("at")
    daemon.signal(signal.SIGHUP)
    return wait_for(lambda: (r := daemon.status().get("reload", {})).get("at") != before and r, timeout_s,
                    "the reload result")


def backups(daemon: DaemonProcess) -> dict[str, bytes]:
    directory = daemon.config.parent / "state" / "config-backups"
    return {path.name: path.read_bytes() for path in sorted(directory.iterdir())}


def check_backups_verify(found: dict[str, bytes]) -> None:
    """Every backup's content matches the sha256 and size its sidecar recorded."""
    for name, data in found.items():
        if name.endswith(".json"):
            sidecar = json.loads(data)
            content = found[name.removesuffix(".json") + ".toml"]
            assert (sidecar["sha256"], sidecar["size"]) == (hashlib.sha256(content).hexdigest(), len(content)), name


def still_serving_the_old_config(daemon: DaemonProcess) -> None:
    assert tts(daemon.socket, "x" * LIMIT).status == 200
    over = tts(daemon.socket, "x" * (LIMIT + 1))
    assert over.status == 400 and over.json()["error"]["code"] == "text_too_long", over.body


def cut_mid_line(good: bytes) -> bytes:
    """An editor crash: the file ends in the middle of `max_text_chars = 40`."""
    return good[: good.index(b"max_text_chars") + len(b"max_text_ch")]


# name → (how the good file is damaged, what the error must name besides the file path: any of these)
DAMAGE: dict[str, tuple[Callable[[bytes], bytes | None], tuple[str, ...]]] = {
    "cut short": (cut_mid_line, ("line", "end of document")),
    "not utf-8": (lambda good: good.replace(b"[limits]", b"[limits]\n# caf\xe9"), ("not UTF-8",)),
    "unknown key": (lambda good: good.replace(b"[limits]", b"[limits]\nmax_text_charz = 5"), ("max_text_charz",)),
    "wrong type": (lambda good: good.replace(f"max_text_chars = {LIMIT}".encode(), b'max_text_chars = "forty"'),
                   ("max_text_chars",)),
    "out of range": (lambda good: good.replace(b"[engine]", b"[engine]\nnfe = 0"), ("nfe",)),
    "deleted": (lambda good: None, ("cannot read",)),
}


@pytest.fixture(scope="module")
def limited_daemon(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> Iterator[DaemonProcess]:
    daemon = start_daemon(tmp_path_factory.mktemp("config"), models_dir)
    daemon.config.write_text(daemon.config.read_text() + f"[limits]\nmax_text_chars = {LIMIT}\n")
    assert reload_and_wait(daemon)["result"] == "applied"
    yield daemon
    assert daemon.stop() == 0, daemon.log()[-3000:]


def test_damaged_configs_are_rejected_precisely_and_the_old_one_keeps_serving(
        limited_daemon: DaemonProcess) -> None:
    daemon = limited_daemon
    good, kept = daemon.config.read_bytes(), backups(daemon)
    check_backups_verify(kept)
    for name, (damage, locators) in DAMAGE.items():
        damaged = damage(good)
        if damaged is None:
            daemon.config.unlink()
        else:
            daemon.config.write_bytes(damaged)
        result = reload_and_wait(daemon)
        print(f"\nFIGURE config {name}: {result['result']}: {result['error']}")
        assert result["result"] == "rejected", (name, result)
        error = str(result["error"])
        assert str(daemon.config) in error and any(words in error for words in locators), (name, result)
        still_serving_the_old_config(daemon)
        assert backups(daemon) == kept, f"{name}: a rejected reload changed the backups"
    daemon.config.write_bytes(good)


def test_a_config_that_breaks_the_engine_is_rolled_back_byte_for_byte(limited_daemon: DaemonProcess) -> None:
    daemon = limited_daemon
    good, kept = daemon.config.read_bytes(), backups(daemon)
    daemon.config.write_bytes(b"")  # emptied: every default, so the real model this box does not have
    result = reload_and_wait(daemon, timeout_s=240)
    now = backups(daemon)
    print(f"\nFIGURE config emptied: {result['result']}: {result['error']}; backups {len(kept)} -> {len(now)}")
    assert result["result"] == "rolled_back", result
    assert daemon.config.read_bytes() == good
    assert {name: now[name] for name in kept} == kept, "an existing backup changed"
    check_backups_verify(now)
    added = [now[name] for name in now.keys() - kept.keys() if name.endswith(".toml")]
    assert b"" in added, "the emptied file was not kept as a pre-rollback backup"
    still_serving_the_old_config(daemon)
    assert request(daemon.socket, "GET", "/readyz").status == 200
