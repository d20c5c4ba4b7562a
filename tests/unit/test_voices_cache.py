"""VoiceStore.cached: the synthesis routes' no-thread-hop lookup, and when it must say "ask get"."""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import numpy as np
import soundfile as sf

from ishowttsd.config import LimitsConfig
from ishowttsd.voices import BUILTIN_VOICE, DEFAULT_REF_TEXT, VoiceStore, find_default_reference


def tone_wav(seconds: float = 2.0, rate: int = 24_000) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    buffer = io.BytesIO()
    sf.write(buffer, 0.3 * np.sin(2 * np.pi * 330.0 * t), rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def store_at(root: Path, default_audio: Path | None = None) -> VoiceStore:
    return VoiceStore(root, default_audio or find_default_reference(), DEFAULT_REF_TEXT, LimitsConfig())  # type: ignore[arg-type]


def touch_later(path: Path) -> None:
    """Move the file's mtime on by a second (as an edit would), whatever the filesystem's granularity."""
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))


def test_nothing_is_cached_before_get_and_get_is_remembered(tmp_path: Path) -> None:
    store = store_at(tmp_path / "voices")
    store.add("alice", tone_wav(), "Hello there.")
    assert store.cached("alice") is None and store.cached(BUILTIN_VOICE) is None
    ref = store.get("alice")
    assert store.cached("alice") == ref and store.cached("bob") is None


def test_the_builtin_voice_is_cached_until_its_audio_changes(tmp_path: Path) -> None:
    audio = tmp_path / "ref.wav"
    shutil.copyfile(find_default_reference(), audio)
    store = store_at(tmp_path / "voices", audio)
    ref = store.get(BUILTIN_VOICE)
    assert store.cached(BUILTIN_VOICE) == ref
    touch_later(audio)
    assert store.cached(BUILTIN_VOICE) is None
    assert store.get(BUILTIN_VOICE).version != ref.version


def test_a_hand_edited_transcript_or_audio_is_noticed(tmp_path: Path) -> None:
    store = store_at(tmp_path / "voices")
    store.add("alice", tone_wav(), "Hello there.")
    store.get("alice")
    text = tmp_path / "voices" / "alice" / "ref.txt"
    text.write_text("Edited by hand.", encoding="utf-8")
    touch_later(text)
    assert store.cached("alice") is None
    assert store.get("alice").ref_text == "Edited by hand."
    touch_later(tmp_path / "voices" / "alice" / "ref.wav")
    assert store.cached("alice") is None


def test_replaced_and_removed_voices_are_never_served_from_memory(tmp_path: Path) -> None:
    store = store_at(tmp_path / "voices")
    store.add("alice", tone_wav(), "first")
    store.get("alice")
    store.add("alice", tone_wav(3.0), "second")
    assert store.cached("alice") is None
    assert store.get("alice").ref_text == "second"
    store.remove("alice")
    assert store.cached("alice") is None


def test_a_voice_deleted_behind_the_stores_back_is_not_served(tmp_path: Path) -> None:
    store = store_at(tmp_path / "voices")
    store.add("alice", tone_wav(), "Hello there.")
    store.get("alice")
    shutil.rmtree(tmp_path / "voices" / "alice")
    assert store.cached("alice") is None
