"""Tests for ishowttsd.fsutil: atomic writes (including a disk-full failure) and bounded JSON lines."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest

from ishowttsd import fsutil
from ishowttsd.fsutil import append_jsonl_bounded, atomic_write_bytes, atomic_write_text, read_jsonl


def enospc(*_args: object) -> None:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_write_creates_file_with_exact_mode(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    old_umask = os.umask(0o077)
    try:
        atomic_write_bytes(target, b"\x00\x01data", mode=0o640)
    finally:
        os.umask(old_umask)
    assert target.read_bytes() == b"\x00\x01data"
    assert target.stat().st_mode & 0o7777 == 0o640
    assert os.listdir(tmp_path) == ["state.json"]


def test_write_replaces_existing_content_and_text_is_utf8(tmp_path: Path) -> None:
    target = tmp_path / "voice.txt"
    target.write_text("old content that is longer than the new one")
    atomic_write_text(target, "Grüße 你好")
    assert target.read_bytes() == "Grüße 你好".encode()
    assert target.stat().st_mode & 0o777 == 0o644


def test_large_write_survives_partial_os_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_write = os.write
    monkeypatch.setattr(fsutil.os, "write", lambda fd, data: real_write(fd, bytes(data[:1000])))
    payload = bytes(range(256)) * 40
    atomic_write_bytes(tmp_path / "big.bin", payload)
    assert (tmp_path / "big.bin").read_bytes() == payload


@pytest.mark.parametrize("failing", ["write", "fsync"])
def test_disk_full_keeps_old_file_and_leaves_no_temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       failing: str) -> None:
    target = tmp_path / "config.toml"
    target.write_bytes(b"old = 1\n")
    monkeypatch.setattr(fsutil.os, failing, enospc)
    with pytest.raises(OSError) as caught:
        atomic_write_bytes(target, b"new = 2\n" * 1000)
    assert caught.value.errno == errno.ENOSPC
    assert target.read_bytes() == b"old = 1\n"
    assert os.listdir(tmp_path) == ["config.toml"]


def test_failed_rename_leaves_no_temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fsutil.os, "replace", enospc)
    with pytest.raises(OSError):
        atomic_write_text(tmp_path / "x.txt", "never")
    assert os.listdir(tmp_path) == []


def test_missing_directory_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        atomic_write_text(tmp_path / "absent" / "x.txt", "x")


def test_append_keeps_only_newest_lines(tmp_path: Path) -> None:
    history = tmp_path / "memory.jsonl"
    for n in range(7):
        append_jsonl_bounded(history, {"n": n, "label": "µ"}, max_lines=3)
    assert read_jsonl(history) == [{"n": 4, "label": "µ"}, {"n": 5, "label": "µ"}, {"n": 6, "label": "µ"}]
    assert history.read_text(encoding="utf-8").count("\n") == 3


def test_append_drops_corrupt_lines_and_rejects_bad_limit(tmp_path: Path) -> None:
    history = tmp_path / "bench.jsonl"
    history.write_bytes(b'{"n": 1}\n{"n": 2, "tor\n\xff\xfe\n[1, 2]\n')
    append_jsonl_bounded(history, {"n": 3}, max_lines=10)
    assert [json.loads(line) for line in history.read_text().splitlines()] == [{"n": 1}, {"n": 3}]
    with pytest.raises(ValueError):
        append_jsonl_bounded(history, {"n": 4}, max_lines=0)


def test_read_jsonl_of_missing_file_is_empty_and_skips_blank_and_corrupt(tmp_path: Path) -> None:
    assert read_jsonl(tmp_path / "none.jsonl") == []
    path = tmp_path / "h.jsonl"
    path.write_text('{"a": 1}\n\n   \nnot json\n"string"\n{"b": [1, 2]}\n{"c":')
    assert read_jsonl(path) == [{"a": 1}, {"b": [1, 2]}]
