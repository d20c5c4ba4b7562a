"""The voice registry on a temp directory, with real audio and f5-tts's shipped reference voice."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ishowttsd.api.audio import VoiceAudioError
from ishowttsd.config import LimitsConfig
from ishowttsd.fsutil import atomic_write_bytes
from ishowttsd.voices import (
    BUILTIN_VOICE,
    DEFAULT_REF_TEXT,
    InvalidTranscript,
    InvalidVoiceName,
    ReservedVoiceName,
    VoiceNotFound,
    VoiceStore,
    check_voice_name,
    find_default_reference,
)


def sine_bytes(seconds: float, rate: int = 24_000, channels: int = 1) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    frames = np.repeat((0.3 * np.sin(2 * np.pi * 330.0 * t))[:, None], channels, axis=1)
    buffer = io.BytesIO()
    sf.write(buffer, frames, rate, format="WAV", subtype="FLOAT")
    return buffer.getvalue()


def open_store(root: Path, **kwargs: object) -> VoiceStore:
    return VoiceStore(root, find_default_reference(), DEFAULT_REF_TEXT, LimitsConfig(), **kwargs)  # type: ignore[arg-type]


def entries(root: Path) -> list[str]:
    return sorted(path.name for path in root.iterdir())


def test_default_reference_is_found_without_importing_f5_tts() -> None:
    code = (
        "import sys; from ishowttsd.voices import find_default_reference as f; p = f(); "
        "print(p.name, 'f5_tts' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["basic_ref_en.wav", "False"]


def test_builtin_voice_is_listed_and_resolvable(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    ref = store.get(BUILTIN_VOICE)
    assert ref.ref_text == DEFAULT_REF_TEXT and Path(ref.audio_path).is_file() and ref.version > 0
    (info,) = store.list()
    assert info.builtin and info.name == "default" and info.sample_rate == 24_000 and info.duration_s > 1


def test_builtin_voice_cannot_be_deleted_or_overwritten(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    with pytest.raises(ReservedVoiceName):
        store.remove(BUILTIN_VOICE)
    with pytest.raises(ReservedVoiceName):
        store.add(BUILTIN_VOICE, sine_bytes(2.0), "hello")
    assert store.get(BUILTIN_VOICE).ref_text == DEFAULT_REF_TEXT and entries(tmp_path) == []


def test_added_voice_is_mono_16bit_at_its_own_rate_with_text_and_meta(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    info = store.add("alice", sine_bytes(2.5, 48_000, channels=2), "  Hello there.  ")
    assert (info.name, info.ref_text, info.sample_rate, info.builtin) == (
        "alice",
        "Hello there.",
        48_000,
        False,
    )
    assert info.duration_s == pytest.approx(2.5, abs=0.001)
    details = sf.info(str(tmp_path / "alice" / "ref.wav"))
    assert (details.channels, details.samplerate, details.subtype, details.format) == (
        1,
        48_000,
        "PCM_16",
        "WAV",
    )
    meta = json.loads((tmp_path / "alice" / "meta.json").read_text())
    assert meta["source_channels"] == 2 and meta["source_format"] == "WAV"
    ref = store.get("alice")
    assert (ref.name, ref.ref_text, ref.audio_path) == (
        "alice",
        "Hello there.",
        str(tmp_path / "alice" / "ref.wav"),
    )
    assert [voice.name for voice in store.list()] == ["default", "alice"]


def test_replacing_a_voice_changes_its_version_and_leaves_no_work_dirs(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    store.add("bob", sine_bytes(2.0), "first")
    before = store.get("bob").version
    store.add("bob", sine_bytes(3.0), "second")
    after = store.get("bob")
    assert after.ref_text == "second" and after.version != before
    assert entries(tmp_path) == ["bob"]


def test_remove_deletes_and_unknown_is_not_found(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    store.add("carol", sine_bytes(2.0), "hi")
    store.remove("carol")
    assert entries(tmp_path) == []
    with pytest.raises(VoiceNotFound):
        store.remove("carol")
    with pytest.raises(VoiceNotFound):
        store.get("carol")


def test_a_write_failure_midway_leaves_no_voice_dir(tmp_path: Path) -> None:
    written: list[str] = []

    def fail_on_second_file(path: Path, data: bytes) -> None:
        if written:
            raise OSError(28, "No space left on device")
        written.append(path.name)
        atomic_write_bytes(path, data)

    store = open_store(tmp_path, write_file=fail_on_second_file)
    with pytest.raises(OSError, match="No space"):
        store.add("dave", sine_bytes(2.0), "hi")
    assert written == ["ref.wav"] and entries(tmp_path) == []
    with pytest.raises(VoiceNotFound):
        store.get("dave")


def test_a_failed_replacement_keeps_the_old_voice(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    store.add("erin", sine_bytes(2.0), "original")
    with pytest.raises(VoiceAudioError):
        store.add("erin", b"garbage" * 50, "replacement")
    assert store.get("erin").ref_text == "original" and entries(tmp_path) == ["erin"]


@pytest.mark.parametrize(
    "name",
    [
        "..",
        ".",
        "../etc",
        "a/b",
        "/abs",
        "Upper",
        "",
        "-lead",
        "_lead",
        "x" * 65,
        "sp ace",
        "tab\t",
        "ünï",
        "nul\x00",
    ],
)
def test_path_traversal_and_malformed_names_are_rejected(tmp_path: Path, name: str) -> None:
    root = tmp_path / "voices"
    (tmp_path / "etc").mkdir()
    store = open_store(root)
    with pytest.raises(InvalidVoiceName):
        store.add(name, sine_bytes(2.0), "hi")
    with pytest.raises(VoiceNotFound):
        store.get(name)
    with pytest.raises((VoiceNotFound, ReservedVoiceName)):
        store.remove(name)
    assert entries(root) == [] and entries(tmp_path) == ["etc", "voices"] and entries(tmp_path / "etc") == []


@pytest.mark.parametrize("name", ["default", "con", "nul"])
def test_reserved_names_are_rejected(name: str) -> None:
    with pytest.raises(ReservedVoiceName):
        check_voice_name(name)


@pytest.mark.parametrize("name", ["a", "0", "my-voice_2", "x" * 64])
def test_valid_names_pass(name: str) -> None:
    assert check_voice_name(name) == name


@pytest.mark.parametrize("text", ["", "   ", "x" * 501])
def test_empty_or_overlong_transcripts_are_rejected(tmp_path: Path, text: str) -> None:
    store = open_store(tmp_path)
    with pytest.raises(InvalidTranscript):
        store.add("frank", sine_bytes(2.0), text)
    assert entries(tmp_path) == []


def test_invalid_audio_is_rejected_before_anything_is_written(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    with pytest.raises(VoiceAudioError) as caught:
        store.add("gina", sine_bytes(0.5), "hi")
    assert caught.value.kind == "bad_duration" and entries(tmp_path) == []


def test_opening_cleans_staged_and_removed_dirs_and_restores_an_interrupted_replacement(
    tmp_path: Path,
) -> None:
    open_store(tmp_path).add("hank", sine_bytes(2.0), "kept")
    (tmp_path / "hank").rename(tmp_path / ".replaced-hank-0123456789ab")  # crash between the two renames
    (tmp_path / ".staging-hank-aaaaaaaaaaaa").mkdir()
    (tmp_path / ".removed-ivy-bbbbbbbbbbbb").mkdir()
    store = open_store(tmp_path)
    assert entries(tmp_path) == ["hank"] and store.get("hank").ref_text == "kept"


def test_unreadable_voice_dirs_are_skipped_in_the_listing(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    store.add("jack", sine_bytes(2.0), "ok")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "meta.json").write_text("{not json")
    assert [voice.name for voice in store.list()] == ["default", "jack"]


def test_a_replacement_within_one_clock_tick_still_changes_the_version(tmp_path: Path) -> None:
    """mtimes can repeat within a kernel clock tick: the version must not rely on them alone."""
    store = open_store(tmp_path)
    store.add("dan", sine_bytes(2.0), "same words")
    before = store.get("dan")
    first_mtime = os.stat(before.audio_path).st_mtime_ns
    store.add("dan", sine_bytes(2.0), "same words")  # same bytes, same text
    os.utime(before.audio_path, ns=(first_mtime, first_mtime))
    os.utime(tmp_path / "dan" / "ref.txt", ns=(first_mtime, first_mtime))
    assert store.get("dan").version != before.version


def test_editing_only_the_transcript_changes_the_version(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    store.add("eve", sine_bytes(2.0), "first words")
    before = store.get("eve").version
    (tmp_path / "eve" / "ref.txt").write_text("other words", encoding="utf-8")
    after = store.get("eve")
    assert after.ref_text == "other words" and after.version != before
