"""Hypothesis strategies for hostile input: JSON bodies, voice names, audio files, multipart forms."""

from __future__ import annotations

import io
import json
import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np
import soundfile
from hypothesis import strategies as st

# Every code point class, control characters, lone surrogates (json.dumps escapes them), NUL.
ANY_CHAR = st.characters(codec=None, exclude_categories=())
HOSTILE_TEXT = st.one_of(
    st.text(ANY_CHAR, max_size=40),
    st.text(st.characters(min_codepoint=0, max_codepoint=0x1F), max_size=20),
    st.sampled_from(["", " ", "\u200b", "\ufeff", "\u202e evil", "a\x00b", "\ud800", "🙂" * 5, "Hi.",
                     "%s%n", "${jndi:x}", "<script>", "' OR 1=1 --", "\r\n\r\nHTTP/1.1 200 OK"]),
)
JSON_SCALAR = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70),
                        st.floats(allow_nan=False, allow_infinity=False), HOSTILE_TEXT)
ANY_JSON = st.recursive(JSON_SCALAR, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                             st.dictionaries(HOSTILE_TEXT, inner, max_size=4)),
                        max_leaves=12)


def maybe(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly a plausible value, sometimes anything JSON can hold."""
    return st.one_of(valid, valid, ANY_JSON)


def short_text(max_chars: int) -> st.SearchStrategy[str]:
    plausible = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=24)
    edge = st.sampled_from(["x" * max_chars, "x" * (max_chars + 1), "Hi. " * (max_chars // 4)])
    return st.one_of(plausible, HOSTILE_TEXT, edge)


def tts_bodies(max_chars: int) -> st.SearchStrategy[dict[str, Any]]:
    fields = {
        "text": maybe(short_text(max_chars)),
        "voice": maybe(st.sampled_from(["default", "nope", "../default", "DEFAULT", ""])),
        "nfe": maybe(st.sampled_from([1, 2, 0, 65, -1, 2**40])),
        "speed": maybe(st.sampled_from([0.3, 1.0, 3.0, 0.29, 3.01, 1e308, -0.0])),
        "seed": maybe(st.integers(-1, 2**33)),
        "format": maybe(st.sampled_from(["wav", "pcm", "mp3", "WAV", ""])),
        "stream": maybe(st.booleans()),
    }
    return st.fixed_dictionaries({"text": fields.pop("text")}, optional=fields) | st.dictionaries(
        HOSTILE_TEXT, ANY_JSON, max_size=4)


def openai_bodies(max_chars: int) -> st.SearchStrategy[dict[str, Any]]:
    fields = {
        "model": maybe(st.sampled_from(["tts-1", "f5", ""])),
        "voice": maybe(st.sampled_from(["default", "alloy", "", "../x"])),
        "response_format": maybe(st.sampled_from(["wav", "pcm", "mp3", "opus", "flac"])),
        "speed": maybe(st.sampled_from([0.3, 1.0, 3.0, 4.0])),
        "stream_format": maybe(st.sampled_from(["audio", "sse"])),
        "instructions": maybe(HOSTILE_TEXT),
    }
    return st.fixed_dictionaries({"input": maybe(short_text(max_chars))}, optional=fields)


# ---- voice names --------------------------------------------------------------------------------
TRAVERSAL_NAMES = ["..", ".", "../x", "../../etc/passwd", "a/../b", "a/b", "/abs", "x\x00y", "%2e%2e",
                   "..%2f..%2fetc", ".staging-x", ".hidden", "default", "con", "nul", "prn", "aux",
                   "a" * 64, "a" * 65, "-x", "_x", "Upper", "ü", "x ", " x", "x\n", ""]
VALID_NAMES = st.from_regex(r"[a-z0-9][a-z0-9_-]{0,15}", fullmatch=True)
VOICE_NAMES = st.one_of(VALID_NAMES, st.sampled_from(TRAVERSAL_NAMES), st.text(ANY_CHAR, max_size=12))


# ---- audio --------------------------------------------------------------------------------------
ODD_RATES = [8000, 11025, 16000, 22050, 24000, 44100, 48000, 96000, 192000, 4000, 7999, 192001, 384000]
# (container, subtype) pairs soundfile can write
FORMATS = [("WAV", "PCM_16"), ("WAV", "PCM_24"), ("WAV", "FLOAT"), ("WAV", "PCM_U8"), ("FLAC", "PCM_16"),
           ("OGG", "VORBIS"), ("AIFF", "PCM_16"), ("RAW", "PCM_16")]


@dataclass(frozen=True)
class AudioSpec:
    rate: int
    channels: int
    seconds: float
    container: str
    subtype: str
    content: str  # "tone", "noise", "silence", "nan"


JUNK = b"RIFF\x00\x00\x00\x00WAVEnot really"
# libsndfile's Vorbis encoder segfaults above 192 kHz (the test process, not the daemon, would die)
UNWRITABLE = {"OGG": 192_000}


def render(spec: AudioSpec) -> bytes:
    if spec.rate > UNWRITABLE.get(spec.container, spec.rate):
        return JUNK
    frames = max(1, int(spec.rate * spec.seconds))
    t = np.arange(frames, dtype=np.float32) / spec.rate
    mono = {"tone": 0.3 * np.sin(2 * np.pi * 220 * t), "silence": np.zeros(frames, np.float32),
            "noise": np.random.default_rng(frames).uniform(-0.5, 0.5, frames).astype(np.float32),
            "nan": np.full(frames, np.nan, np.float32)}[spec.content]
    data = np.repeat(mono[:, None], spec.channels, axis=1)
    buffer = io.BytesIO()
    try:
        soundfile.write(buffer, data, spec.rate, subtype=spec.subtype, format=spec.container)
    except (soundfile.LibsndfileError, ValueError, RuntimeError):
        return JUNK  # this combination cannot be written: junk instead
    return buffer.getvalue()


AUDIO_SPECS = st.builds(
    lambda rate, channels, seconds, fmt, content: AudioSpec(rate, channels, seconds, fmt[0], fmt[1], content),
    st.sampled_from(ODD_RATES), st.sampled_from([1, 2, 6]), st.sampled_from([0.2, 0.99, 1.0, 2.5, 15.0, 15.01]),
    st.sampled_from(FORMATS), st.sampled_from(["tone", "tone", "noise", "silence", "nan"]))


@st.composite
def damaged(draw: st.DrawFn, audio: bytes) -> bytes:
    """The file cut short, a header byte changed, or the sizes set to 0xFFFFFFFF."""
    how = draw(st.sampled_from(["cut", "flip", "sizes", "none", "none"]))
    if how == "cut":
        return audio[: draw(st.integers(0, max(0, len(audio) - 1)))]
    if how == "flip" and audio:
        at = draw(st.integers(0, min(len(audio), 64) - 1))
        return audio[:at] + bytes([audio[at] ^ 0xFF]) + audio[at + 1:]
    if how == "sizes" and audio[:4] == b"RIFF":
        return audio[:4] + b"\xff\xff\xff\xff" + audio[8:40] + b"\xff\xff\xff\xff" + audio[44:]
    return audio


@st.composite
def audio_files(draw: st.DrawFn) -> tuple[AudioSpec | None, bytes]:
    if draw(st.integers(0, 9)) == 0:
        return None, draw(st.binary(max_size=4096))
    spec = draw(AUDIO_SPECS)
    return spec, draw(damaged(render(spec)))


# ---- multipart ----------------------------------------------------------------------------------
def multipart(parts: list[tuple[str, bytes, str | None]], boundary: str | None = None) -> tuple[bytes, str]:
    """(body, content type) of a form with these (field name, value, filename) parts."""
    boundary = boundary or uuid.uuid4().hex
    chunks = []
    for name, value, filename in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        chunks.append(f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + value + b"\r\n")
    return b"".join(chunks) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


@st.composite
def voice_forms(draw: st.DrawFn) -> dict[str, Any]:
    """A voice upload, well-formed or not: name, transcript, audio, and how the form is mangled."""
    name = draw(VOICE_NAMES)
    text = draw(st.one_of(st.just("Some call me nature, others call me mother nature."), HOSTILE_TEXT,
                          st.just("x" * 501)))
    spec, audio = draw(audio_files())
    mangle = draw(st.sampled_from(["none", "none", "none", "missing", "repeat", "extra", "truncate",
                                   "no_boundary", "not_multipart", "latin1_name"]))
    return {"name": name, "text": text, "spec": spec, "audio": audio, "mangle": mangle}


def encode_field(value: str, latin1: bool = False) -> bytes:
    return value.encode("latin-1", "replace") if latin1 else value.encode("utf-8", "surrogatepass")


def build_form(form: dict[str, Any]) -> tuple[bytes, str]:
    mangle = form["mangle"]
    parts = [("name", encode_field(form["name"], mangle == "latin1_name"), None),
             ("text", encode_field(form["text"]), None), ("audio", form["audio"], "ref.wav")]
    parts = {"missing": parts[1:], "repeat": [*parts, parts[0]], "extra": [*parts, ("x", b"1", None)]}.get(
        mangle, parts)
    body, content_type = multipart(parts)
    if mangle == "truncate":
        body = body[: len(body) // 2]
    if mangle == "no_boundary":
        content_type = "multipart/form-data"
    if mangle == "not_multipart":
        content_type = "application/json"
    return body, content_type


def json_bytes(value: Any) -> bytes:
    return json.dumps(value).encode()
