"""Crash-safe file writes: every file the daemon owns is replaced whole or not at all.

A write goes to a temporary file in the target's own directory (same filesystem, so the rename
is atomic), is flushed with fsync, renamed over the target with os.replace, and then the
directory itself is fsynced so the rename survives a power cut. Any failure on the way
(ENOSPC, EIO, a signal) removes the temporary file and leaves the old file untouched.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["append_jsonl_bounded", "append_jsonl_line", "atomic_write_bytes", "atomic_write_text", "fsync_dir",
           "read_jsonl"]


def atomic_write_bytes(path: Path | str, data: bytes, mode: int = 0o644) -> None:
    """Replace `path` with `data` atomically; the file gets exactly `mode` (umask not applied)."""
    target = Path(path)
    fd, temp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        _fill_and_sync(fd, data, mode)
        os.replace(temp_name, target)
    except BaseException:
        _remove_quietly(temp_name)
        raise
    fsync_dir(target.parent)


def atomic_write_text(path: Path | str, text: str, mode: int = 0o644) -> None:
    """Replace `path` with `text` (UTF-8) atomically."""
    atomic_write_bytes(path, text.encode("utf-8"), mode)


def fsync_dir(directory: Path | str) -> None:
    """Flush a directory entry change (a rename, a new file) to disk."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def append_jsonl_bounded(path: Path | str, record: dict[str, Any], max_lines: int) -> None:
    """Append one JSON record to a JSON-lines file, keeping only the newest `max_lines` records.

    The whole file is rewritten atomically, so a reader never sees a torn line; corrupt lines
    already in the file are dropped on the way. Callers writing the same file from several
    threads must serialise their calls (read-modify-write).
    """
    if max_lines < 1:
        raise ValueError(f"max_lines must be at least 1, got {max_lines}")
    kept = [_encode_record(old) for old in read_jsonl(path)]
    kept.append(_encode_record(record))
    atomic_write_text(path, "".join(line + "\n" for line in kept[-max_lines:]))


def append_jsonl_line(path: Path | str, record: dict[str, Any], mode: int = 0o640) -> None:
    """Append one JSON record as one whole line with a single O_APPEND write, then fsync.

    The file is opened by name for every record, so an external rename rotation (logrotate
    without copytruncate) loses and duplicates nothing: each line lands in exactly one file.
    A reader may see a torn last line only after a crash mid-write; read_jsonl skips it.
    """
    line = (_encode_record(record) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, mode)
    try:
        size = os.fstat(fd).st_size
        try:
            if os.write(fd, line) != len(line):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
            os.fsync(fd)
        except OSError:
            os.ftruncate(fd, size)  # never leave a torn line behind (disk full mid-write)
            raise
    finally:
        os.close(fd)


def read_jsonl(path: Path | str) -> list[dict[str, Any]]:
    """All JSON objects of a JSON-lines file, oldest first; a missing file gives [].

    Lines that are not a JSON object (torn, corrupt, not UTF-8) are skipped.
    """
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        return []
    text = raw.decode("utf-8", errors="replace")
    return [record for record in map(_decode_line, text.splitlines()) if record is not None]


def _decode_line(line: str) -> dict[str, Any] | None:
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _encode_record(record: dict[str, Any]) -> str:
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"))


def _fill_and_sync(fd: int, data: bytes, mode: int) -> None:
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fchmod(fd, mode)
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove_quietly(name: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(name)
