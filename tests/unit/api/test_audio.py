"""Voice-audio validation and WAV framing, with real audio bytes made by soundfile."""

from __future__ import annotations

import io
import wave

import numpy as np
import pytest
import soundfile as sf

from ishowttsd.api.audio import (
    STREAMING_SIZE_PLACEHOLDER,
    VOICE_AUDIO_ERROR_KINDS,
    VoiceAudioError,
    pcm_seconds,
    pcm_to_wav,
    streaming_wav_header,
    validate_voice_audio,
    wav_body,
    wav_header,
)
from ishowttsd.api.errors import VOICE_AUDIO_ERRORS
from ishowttsd.config import LimitsConfig

LIMITS = LimitsConfig()  # min 1 s, max 15 s, 8 MiB


def sine_bytes(
    seconds: float, rate: int = 24_000, channels: int = 1, fmt: str = "WAV", subtype: str = "PCM_16"
) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    tone = 0.3 * np.sin(2 * np.pi * 220.0 * t)
    frames = np.stack([tone * (k + 1) / channels for k in range(channels)], axis=1)
    buffer = io.BytesIO()
    sf.write(buffer, frames, rate, format=fmt, subtype=subtype)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "fmt,subtype", [("WAV", "PCM_16"), ("WAV", "FLOAT"), ("FLAC", "PCM_16"), ("OGG", "VORBIS")]
)
def test_accepted_formats_decode_to_mono_with_measured_duration(fmt: str, subtype: str) -> None:
    audio = validate_voice_audio(sine_bytes(2.0, 22_050, fmt=fmt, subtype=subtype), LIMITS)
    assert audio.source_format == fmt and audio.sample_rate == 22_050
    assert audio.duration_s == pytest.approx(2.0, abs=0.01)
    assert audio.samples.ndim == 1 and audio.samples.dtype == np.float32
    assert 0.25 < float(np.abs(audio.samples).max()) < 0.35


def test_stereo_48k_is_downmixed_to_the_channel_mean() -> None:
    audio = validate_voice_audio(sine_bytes(3.0, 48_000, channels=2), LIMITS)
    assert (audio.source_channels, audio.sample_rate, audio.samples.ndim) == (2, 48_000, 1)
    # channel 1 carries 0.5 x the tone, channel 2 1.0 x: the mean is 0.75 x 0.3 = 0.225 at the peak
    assert float(np.abs(audio.samples).max()) == pytest.approx(0.225, abs=0.002)


@pytest.mark.parametrize("seconds", [0.5, 20.0])
def test_too_short_and_too_long_clips_are_rejected_with_their_duration(seconds: float) -> None:
    with pytest.raises(VoiceAudioError) as caught:
        validate_voice_audio(sine_bytes(seconds, 16_000), LIMITS)
    assert caught.value.kind == "bad_duration"
    assert f"{seconds:.2f} s" in caught.value.message


@pytest.mark.parametrize("garbage", [b"", b"not audio at all" * 100, b"RIFF\x00\x00\x00\x00WAVEjunk"])
def test_garbage_bytes_are_undecodable(garbage: bytes) -> None:
    with pytest.raises(VoiceAudioError) as caught:
        validate_voice_audio(garbage, LIMITS)
    assert caught.value.kind == "undecodable"


def test_other_container_formats_are_refused() -> None:
    with pytest.raises(VoiceAudioError) as caught:
        validate_voice_audio(sine_bytes(2.0, fmt="AIFF"), LIMITS)
    assert caught.value.kind == "unsupported_format" and "AIFF" in caught.value.message


def test_sample_rate_outside_8k_192k_is_refused() -> None:
    with pytest.raises(VoiceAudioError) as caught:
        validate_voice_audio(sine_bytes(2.0, 4_000), LIMITS)
    assert caught.value.kind == "bad_sample_rate"


def test_oversized_upload_is_refused_before_decoding() -> None:
    small = LimitsConfig(max_upload_bytes=1024)
    with pytest.raises(VoiceAudioError) as caught:
        validate_voice_audio(sine_bytes(2.0), small)
    assert caught.value.kind == "too_large"


def test_nan_samples_are_refused() -> None:
    buffer = io.BytesIO()
    sf.write(buffer, np.full(24_000 * 2, np.nan, dtype=np.float32), 24_000, format="WAV", subtype="FLOAT")
    with pytest.raises(VoiceAudioError) as caught:
        validate_voice_audio(buffer.getvalue(), LIMITS)
    assert caught.value.kind == "not_finite"


def test_pcm_to_wav_is_a_24k_mono_16bit_riff_file() -> None:
    pcm = np.arange(-500, 500, dtype="<i2").tobytes()
    data = pcm_to_wav(pcm)
    with wave.open(io.BytesIO(data)) as reader:
        assert (reader.getframerate(), reader.getnchannels(), reader.getsampwidth()) == (24_000, 1, 2)
        assert reader.readframes(reader.getnframes()) == pcm


def test_streaming_header_has_placeholder_sizes_and_the_right_format() -> None:
    header = streaming_wav_header()
    assert len(header) == 44 and header[:4] == b"RIFF" and header[8:16] == b"WAVEfmt "
    assert int.from_bytes(header[4:8], "little") == STREAMING_SIZE_PLACEHOLDER
    assert header[36:40] == b"data" and int.from_bytes(header[40:44], "little") == STREAMING_SIZE_PLACEHOLDER
    assert header[20:36] == pcm_to_wav(b"")[20:36]  # same fmt chunk as a complete file


def test_pcm_seconds_counts_16bit_samples_at_24k() -> None:
    assert pcm_seconds(48_000) == 1.0


def test_every_voice_audio_error_kind_has_an_http_mapping() -> None:
    assert set(VOICE_AUDIO_ERROR_KINDS) == set(VOICE_AUDIO_ERRORS)


@pytest.mark.parametrize("sizes", [[], [0], [2], [4800, 2], [1000, 2000, 3000], [123_456]])
def test_wav_body_is_the_same_file_as_pcm_to_wav(sizes: list[int]) -> None:
    rng = np.random.default_rng(sum(sizes))
    pieces = [rng.integers(0, 256, n, dtype=np.uint8).tobytes() for n in sizes]
    assert wav_body(pieces) == pcm_to_wav(b"".join(pieces))
    assert wav_header(10) == pcm_to_wav(b"\0" * 10)[:44]
