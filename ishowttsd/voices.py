"""Voice registry: reference recordings + transcripts on disk, one directory per voice.

Layout: ROOT/NAME/ref.wav (mono 16-bit WAV at the upload's own rate), ref.txt, meta.json.
A voice is staged complete in ROOT/.staging-NAME-XXXX and renamed into place, so a crash never
leaves half a voice and a failed upload leaves nothing; a replaced or removed voice is first
renamed aside (.replaced-NAME-XXXX or .removed-NAME-XXXX) and deleted afterwards. Names starting
with "." are never voice names, so these work directories cannot collide with voices; they are
cleaned up when the store opens.

The methods block (file I/O, soundfile): call them through `asyncio.to_thread` from the event loop.
They are thread-safe. The one exception is `cached`, the synthesis routes' fast path: it answers
from memory after at most two stat() calls (no reads), so the event loop may call it directly and
skip a thread hop per request; it returns None whenever `get` must look at the files.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import shutil
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

import soundfile as sf
import structlog

from ishowttsd.api.audio import VoiceAudio, VoiceAudioLimits, encode_pcm16_wav, validate_voice_audio
from ishowttsd.engine.protocol import VoiceRef
from ishowttsd.fsutil import atomic_write_bytes, fsync_dir

log = structlog.get_logger(__name__)

BUILTIN_VOICE = "default"
DEFAULT_REF_TEXT = "Some call me nature, others call me mother nature."
DEFAULT_REF_RELPATH = Path("infer", "examples", "basic", "basic_ref_en.wav")
VOICE_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
# "default" is the built-in voice; the rest are names some filesystems or tools treat specially.
RESERVED_NAMES = frozenset({BUILTIN_VOICE, "con", "nul", "prn", "aux", ".", ".."})
AUDIO_FILE, TEXT_FILE, META_FILE = "ref.wav", "ref.txt", "meta.json"
STAGING_PREFIX, REPLACED_PREFIX, REMOVED_PREFIX = ".staging-", ".replaced-", ".removed-"


class VoiceError(Exception):
    """Base of the registry's own errors; str(exc) is a message fit for the client."""


class VoiceNotFound(VoiceError, LookupError):
    pass


class InvalidVoiceName(VoiceError, ValueError):
    pass


class ReservedVoiceName(VoiceError, ValueError):
    pass


class InvalidTranscript(VoiceError, ValueError):
    pass


@dataclass(frozen=True)
class CachedRef:
    """A VoiceRef `get` built, the files it was built from and their stamps when it was."""

    ref: VoiceRef
    files: tuple[str, ...]
    stamps: Stamps


Stamps = tuple[tuple[int, int, int], ...]


def file_stamps(paths: tuple[str, ...]) -> Stamps | None:
    """(mtime ns, inode, size) per file; None if one is missing or unreadable. A replaced file always
    differs: it is written as a new inode while the old one still exists (mtimes alone can repeat
    within one kernel clock tick)."""
    try:
        return tuple((st.st_mtime_ns, st.st_ino, st.st_size) for st in map(os.stat, paths))
    except OSError:
        return None


def stamps_version(stamps: Stamps) -> int:
    """The VoiceRef version (the engine's reference cache key) for these file stamps: 63 bits."""
    return int.from_bytes(hashlib.blake2b(repr(stamps).encode(), digest_size=8).digest(), "big") >> 1


class VoiceLimits(VoiceAudioLimits, Protocol):
    max_ref_text_chars: int


@dataclass(frozen=True)
class VoiceInfo:
    name: str
    ref_text: str
    duration_s: float
    sample_rate: int
    builtin: bool = False
    created_at: float = 0.0

    def to_json(self) -> dict[str, object]:
        return asdict(self)


def find_default_reference() -> Path:
    """f5-tts's shipped English reference wav, located WITHOUT importing f5_tts."""
    spec = importlib.util.find_spec("f5_tts")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        candidate = Path(location) / DEFAULT_REF_RELPATH
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"f5-tts's reference voice {DEFAULT_REF_RELPATH} not found "
                            "(is f5-tts installed?)")


def check_voice_name(name: str) -> str:
    """A name a client may create or delete: the pattern, and not reserved."""
    if not VOICE_NAME.fullmatch(name):
        raise InvalidVoiceName(f"invalid voice name {name!r}: use 1-64 of a-z 0-9 _ - (starting a-z/0-9)")
    if name in RESERVED_NAMES:
        raise ReservedVoiceName(f"voice name {name!r} is reserved")
    return name


def check_transcript(text: str, max_chars: int) -> str:
    stripped = text.strip()
    if not stripped:
        raise InvalidTranscript("the transcript (text) of the reference audio must not be empty")
    if len(stripped) > max_chars:
        raise InvalidTranscript(f"the transcript has {len(stripped)} characters; the limit is {max_chars}")
    return stripped


class VoiceStore:
    """The voice registry under `root`, plus the built-in read-only "default" voice."""

    def __init__(self, root: Path, default_audio: Path, default_text: str, limits: VoiceLimits, *,
                 write_file: Callable[[Path, bytes], None] = atomic_write_bytes) -> None:
        self._root = root
        self._default_audio = default_audio
        self._default_text = default_text
        self._limits = limits
        self._write_file = write_file
        self._lock = threading.Lock()
        self._refs: dict[str, CachedRef] = {}
        root.mkdir(parents=True, exist_ok=True)
        self._recover()

    def set_limits(self, limits: VoiceLimits) -> None:
        """New [limits] (a reload): uploads are checked against them from now on."""
        self._limits = limits

    def cached(self, name: str) -> VoiceRef | None:
        """What `get` last returned for `name`, if its files have not changed since (two stat() calls,
        no reads: fit for the event loop); None = call `get` (through a thread)."""
        entry = self._refs.get(name)
        if entry is None or file_stamps(entry.files) != entry.stamps:
            return None
        return entry.ref

    # Reads take the lock too, so they never fall between the two renames of a replacement.
    def get(self, name: str) -> VoiceRef:
        """The voice as the engine needs it; raises VoiceNotFound. Remembered for `cached`."""
        if name == BUILTIN_VOICE:
            return self._builtin_ref()
        with self._lock:
            directory = self._existing_dir(name)
            stamps = file_stamps(self._stamped_files(name))  # before the reads: a later write changes them
            text = (directory / TEXT_FILE).read_text(encoding="utf-8")
            if stamps is None:
                raise VoiceNotFound(f"voice {name!r} changed while it was read; try again")
            ref = VoiceRef(name, str(directory / AUDIO_FILE), text, stamps_version(stamps))
            return self._remember(name, ref, stamps)

    def _stamped_files(self, name: str) -> tuple[str, ...]:
        """The files a cached VoiceRef depends on (their mtimes are checked on every `cached`)."""
        if name == BUILTIN_VOICE:
            return (str(self._default_audio),)
        return str(self._root / name / AUDIO_FILE), str(self._root / name / TEXT_FILE)

    def _remember(self, name: str, ref: VoiceRef, stamps: Stamps) -> VoiceRef:
        self._refs[name] = CachedRef(ref, self._stamped_files(name), stamps)
        return ref

    def info(self, name: str) -> VoiceInfo:
        if name == BUILTIN_VOICE:
            return self._builtin_info()
        with self._lock:
            return self._read_info(self._existing_dir(name))

    def list(self) -> list[VoiceInfo]:
        """The built-in voice first, then the stored ones by name; unreadable entries are skipped (logged)."""
        with self._lock:
            stored = [info for path in sorted(self._root.iterdir()) if (info := self._try_read_info(path))]
        return [self._builtin_info(), *stored]

    def add(self, name: str, audio_bytes: bytes, text: str) -> VoiceInfo:
        """Validate and store (or replace) a voice; raises VoiceError or api.audio.VoiceAudioError."""
        check_voice_name(name)
        transcript = check_transcript(text, self._limits.max_ref_text_chars)
        audio = validate_voice_audio(audio_bytes, self._limits)
        staging = self._stage(name, audio, transcript)
        with self._lock:
            self._refs.pop(name, None)
            self._install(staging, self._root / name)
            return self._read_info(self._root / name)

    def remove(self, name: str) -> None:
        """Delete a stored voice; raises ReservedVoiceName for "default", VoiceNotFound if absent."""
        if name in RESERVED_NAMES:
            raise ReservedVoiceName(f"voice {name!r} is built in and cannot be deleted")
        with self._lock:
            self._refs.pop(name, None)
            directory = self._existing_dir(name)
            retired = self._work_dir(REMOVED_PREFIX, name)
            os.rename(directory, retired)
            fsync_dir(self._root)
        shutil.rmtree(retired, ignore_errors=True)

    def _existing_dir(self, name: str) -> Path:
        if not VOICE_NAME.fullmatch(name) or name in RESERVED_NAMES:
            raise VoiceNotFound(f"voice {name!r} not found")
        directory = self._root / name
        if not (directory / META_FILE).is_file():
            raise VoiceNotFound(f"voice {name!r} not found")
        return directory

    def _work_dir(self, prefix: str, name: str) -> Path:
        return self._root / f"{prefix}{name}-{uuid.uuid4().hex[:12]}"

    def _stage(self, name: str, audio: VoiceAudio, transcript: str) -> Path:
        """Write the complete voice into a fresh hidden directory; on failure remove it and re-raise."""
        staging = self._work_dir(STAGING_PREFIX, name)
        staging.mkdir()
        try:
            self._write_file(staging / AUDIO_FILE, encode_pcm16_wav(audio.samples, audio.sample_rate))
            self._write_file(staging / TEXT_FILE, transcript.encode("utf-8"))
            self._write_file(staging / META_FILE, _meta_json(name, audio))
            fsync_dir(staging)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return staging

    def _install(self, staging: Path, final: Path) -> None:
        """Rename the staged voice into place, moving an older version aside first."""
        retired = self._work_dir(REPLACED_PREFIX, final.name)
        replacing = final.exists()
        if replacing:
            os.rename(final, retired)
        os.rename(staging, final)
        fsync_dir(self._root)
        if replacing:
            shutil.rmtree(retired, ignore_errors=True)

    def _recover(self) -> None:
        """After a crash: drop staged and removed voices; restore a replaced one with no successor."""
        for path in self._root.iterdir():
            if path.name.startswith((STAGING_PREFIX, REMOVED_PREFIX)):
                shutil.rmtree(path, ignore_errors=True)
        for path in self._root.iterdir():
            if path.name.startswith(REPLACED_PREFIX):
                self._recover_replaced(path)

    def _recover_replaced(self, path: Path) -> None:
        name = path.name.removeprefix(REPLACED_PREFIX).rsplit("-", 1)[0]
        final = self._root / name
        if VOICE_NAME.fullmatch(name) and not final.exists():
            os.rename(path, final)
            log.warning("voice_restored", voice=name)
        else:
            shutil.rmtree(path, ignore_errors=True)

    def _builtin_ref(self) -> VoiceRef:
        stamps = file_stamps(self._stamped_files(BUILTIN_VOICE))
        if stamps is None:
            raise VoiceNotFound(f"the built-in voice's audio {self._default_audio} is missing")
        ref = VoiceRef(BUILTIN_VOICE, str(self._default_audio), self._default_text, stamps_version(stamps))
        return self._remember(BUILTIN_VOICE, ref, stamps)

    def _builtin_info(self) -> VoiceInfo:
        try:
            details = sf.info(str(self._default_audio))
        except (sf.LibsndfileError, RuntimeError, OSError):
            return VoiceInfo(BUILTIN_VOICE, self._default_text, 0.0, 0, builtin=True)
        return VoiceInfo(BUILTIN_VOICE, self._default_text, round(details.duration, 3),
                         details.samplerate, builtin=True)

    def _read_info(self, directory: Path) -> VoiceInfo:
        meta = json.loads((directory / META_FILE).read_text(encoding="utf-8"))
        text = (directory / TEXT_FILE).read_text(encoding="utf-8")
        return VoiceInfo(directory.name, text, float(meta["duration_s"]), int(meta["sample_rate"]),
                         builtin=False, created_at=float(meta["created_at"]))

    def _try_read_info(self, path: Path) -> VoiceInfo | None:
        if not VOICE_NAME.fullmatch(path.name) or path.name in RESERVED_NAMES or not path.is_dir():
            return None
        try:
            return self._read_info(path)
        except (OSError, ValueError, KeyError) as exc:
            log.warning("voice_unreadable", voice=path.name, error=str(exc))
            return None


def _meta_json(name: str, audio: VoiceAudio) -> bytes:
    meta = {"name": name, "duration_s": round(audio.duration_s, 3), "sample_rate": audio.sample_rate,
            "source_channels": audio.source_channels, "source_format": audio.source_format,
            "created_at": time.time()}
    return json.dumps(meta, indent=2).encode("utf-8")
