"""Audio helpers: voice-upload validation (pure, given bytes) and WAV framing of engine PCM.

Nothing here touches the event loop; callers run the soundfile work through `asyncio.to_thread`.
"""

from __future__ import annotations

import io
import struct
import wave
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import soundfile as sf

from ishowttsd.engine.protocol import SAMPLE_RATE, SAMPLE_WIDTH

ACCEPTED_FORMATS = ("WAV", "FLAC", "OGG")
SAMPLE_RATE_RANGE = (8_000, 192_000)
# A streamed WAV cannot know its length up front: RIFF and data sizes carry this placeholder
# (what OpenAI's streaming speech endpoint sends); players read until the stream ends.
STREAMING_SIZE_PLACEHOLDER = 0xFFFFFFFF
_RIFF_SIZE_OFFSET = 4
_DATA_SIZE_OFFSET = 40


class VoiceAudioLimits(Protocol):
    """The [limits] keys voice validation needs (ishowttsd.config's limits section satisfies it)."""

    max_upload_bytes: int
    min_voice_s: float
    max_voice_s: float


class VoiceAudioError(ValueError):
    """A rejected reference recording. `kind` is one of VOICE_AUDIO_ERROR_KINDS."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


VOICE_AUDIO_ERROR_KINDS = ("too_large", "undecodable", "unsupported_format", "bad_duration",
                           "bad_sample_rate", "not_finite")


@dataclass(frozen=True)
class VoiceAudio:
    """A decoded, validated reference recording, downmixed to mono float32."""

    samples: np.ndarray
    sample_rate: int
    duration_s: float
    source_channels: int
    source_format: str


def _open(data: bytes) -> sf.SoundFile:
    try:
        return sf.SoundFile(io.BytesIO(data))
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        raise VoiceAudioError("undecodable", f"cannot decode the audio ({exc}); "
                              "send WAV, FLAC or OGG") from exc


def _check_header(handle: sf.SoundFile, limits: VoiceAudioLimits) -> float:
    """Check format, rate and duration from the header alone; returns the duration in seconds."""
    if handle.format not in ACCEPTED_FORMATS:
        raise VoiceAudioError("unsupported_format", f"audio format {handle.format} is not accepted; "
                              f"send one of {', '.join(ACCEPTED_FORMATS)}")
    low, high = SAMPLE_RATE_RANGE
    if not low <= handle.samplerate <= high:
        raise VoiceAudioError("bad_sample_rate",
                              f"sample rate {handle.samplerate} Hz is outside {low}-{high} Hz")
    duration = handle.frames / handle.samplerate
    if not limits.min_voice_s <= duration <= limits.max_voice_s:
        raise VoiceAudioError("bad_duration", f"reference audio lasts {duration:.2f} s; it must last "
                              f"{limits.min_voice_s:g}-{limits.max_voice_s:g} s")
    return duration


def _read_mono(handle: sf.SoundFile) -> np.ndarray:
    try:
        frames = handle.read(dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise VoiceAudioError("undecodable", f"the audio data is corrupt ({exc})") from exc
    mono = frames.mean(axis=1, dtype=np.float32)
    if not np.isfinite(mono).all():
        raise VoiceAudioError("not_finite", "the audio contains NaN or infinite samples")
    return mono


def validate_voice_audio(data: bytes, limits: VoiceAudioLimits) -> VoiceAudio:
    """Decode an uploaded reference recording and check it; raises VoiceAudioError."""
    if len(data) > limits.max_upload_bytes:
        raise VoiceAudioError("too_large",
                              f"audio is {len(data)} bytes; the limit is {limits.max_upload_bytes}")
    with _open(data) as handle:
        duration = _check_header(handle, limits)
        mono = _read_mono(handle)
        return VoiceAudio(mono, handle.samplerate, duration, handle.channels, handle.format)


def encode_pcm16_wav(samples: np.ndarray, sample_rate: int) -> bytes:
    """Mono float samples as a 16-bit PCM WAV file (through soundfile, which clips to int16)."""
    buffer = io.BytesIO()
    sf.write(buffer, samples, sample_rate, subtype="PCM_16", format="WAV")
    return buffer.getvalue()


def pcm_to_wav(pcm: bytes, sample_rate: int = SAMPLE_RATE) -> bytes:
    """Engine PCM (int16 LE mono) wrapped in a complete RIFF/WAVE file."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(SAMPLE_WIDTH)
        writer.setframerate(sample_rate)
        writer.writeframes(pcm)
    return buffer.getvalue()


def wav_header(data_bytes: int, sample_rate: int = SAMPLE_RATE) -> bytes:
    """The 44-byte RIFF/WAVE header of `data_bytes` bytes of engine PCM (what `wave` writes)."""
    return struct.pack("<4sI4s4sIHHIIHH4sI", b"RIFF", 36 + data_bytes, b"WAVE", b"fmt ", 16, 1, 1, sample_rate,
                       sample_rate * SAMPLE_WIDTH, SAMPLE_WIDTH, 8 * SAMPLE_WIDTH, b"data", data_bytes)


def wav_body(pieces: list[bytes], sample_rate: int = SAMPLE_RATE) -> bytes:
    """Engine PCM pieces as one complete WAV file, copied once (pcm_to_wav's bytes, without `wave`)."""
    return b"".join([wav_header(sum(map(len, pieces)), sample_rate), *pieces])


def streaming_wav_header(sample_rate: int = SAMPLE_RATE) -> bytes:
    """A 44-byte header for audio of unknown length: wave's own header, both sizes = the placeholder."""
    header = bytearray(pcm_to_wav(b"", sample_rate))
    struct.pack_into("<I", header, _RIFF_SIZE_OFFSET, STREAMING_SIZE_PLACEHOLDER)
    struct.pack_into("<I", header, _DATA_SIZE_OFFSET, STREAMING_SIZE_PLACEHOLDER)
    return bytes(header)


def pcm_seconds(byte_count: int, sample_rate: int = SAMPLE_RATE) -> float:
    """Duration of `byte_count` bytes of engine PCM."""
    return byte_count / (SAMPLE_WIDTH * sample_rate)
