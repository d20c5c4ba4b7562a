"""Request validation of the synthesis routes (pure functions)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ishowttsd.api.errors import ApiError
from ishowttsd.api.schemas import (
    NFE_RANGE,
    SEED_RANGE,
    SPEED_RANGE,
    SynthesisDefaults,
    decode_json_object,
    parse_openai_speech,
    parse_tts,
)

DEFAULTS = SynthesisDefaults(voice="default", nfe=8, speed=1.0, max_text_chars=50)


def fixed_seed() -> int:
    return 4242


def tts_error(body: dict[str, object]) -> ApiError:
    with pytest.raises(ApiError) as caught:
        parse_tts(body, DEFAULTS, fixed_seed)
    return caught.value


def test_minimal_tts_request_takes_the_defaults_and_a_fresh_seed() -> None:
    params = parse_tts({"text": "hello"}, DEFAULTS, fixed_seed)
    assert (params.text, params.voice, params.nfe, params.speed) == ("hello", "default", 8, 1.0)
    assert (params.seed, params.format, params.stream) == (4242, "wav", False)


def test_every_tts_field_is_taken_from_the_body() -> None:
    body = {"text": "hi", "voice": "bob", "nfe": 16, "speed": 1.5, "seed": 7, "format": "pcm", "stream": True}
    params = parse_tts(body, DEFAULTS, fixed_seed)
    assert (params.voice, params.nfe, params.speed, params.seed) == ("bob", 16, 1.5, 7)
    assert (params.format, params.stream) == ("pcm", True)


@pytest.mark.parametrize("body", [{}, {"text": ""}, {"text": "   "}, {"text": 5}, {"text": None}])
def test_missing_or_blank_text_is_a_400(body: dict[str, object]) -> None:
    assert (tts_error(body).status, tts_error(body).code) == (400, "invalid_field")


def test_text_over_the_limit_is_a_400_naming_the_limit() -> None:
    error = tts_error({"text": "x" * 51})
    assert (error.status, error.code) == (400, "text_too_long")
    assert "50" in error.message


def test_unknown_field_is_a_400_naming_it() -> None:
    error = tts_error({"text": "hi", "nfee": 8})
    assert error.status == 400 and "nfee" in error.message


def test_unsupported_format_is_a_422_naming_the_supported_ones() -> None:
    error = tts_error({"text": "hi", "format": "mp3"})
    assert error.status == 422 and "wav" in error.message and "pcm" in error.message


@pytest.mark.parametrize(
    "field,value",
    [
        ("nfe", True),
        ("nfe", 8.0),
        ("seed", "1"),
        ("speed", "fast"),
        ("speed", True),
        ("stream", 1),
        ("voice", ""),
        ("voice", 3),
    ],
)
def test_wrong_types_are_400(field: str, value: object) -> None:
    assert tts_error({"text": "hi", field: value}).status == 400


@given(st.integers())
def test_nfe_is_accepted_exactly_inside_its_bounds(nfe: int) -> None:
    inside = NFE_RANGE[0] <= nfe <= NFE_RANGE[1]
    try:
        assert parse_tts({"text": "hi", "nfe": nfe}, DEFAULTS, fixed_seed).nfe == nfe
        assert inside
    except ApiError as error:
        assert not inside and error.status == 400


@given(st.floats(allow_nan=True, allow_infinity=True))
def test_speed_is_accepted_exactly_inside_its_bounds(speed: float) -> None:
    inside = math.isfinite(speed) and SPEED_RANGE[0] <= speed <= SPEED_RANGE[1]
    try:
        assert parse_tts({"text": "hi", "speed": speed}, DEFAULTS, fixed_seed).speed == speed
        assert inside
    except ApiError as error:
        assert not inside and error.status == 400


@given(st.integers(min_value=-(2**40), max_value=2**40))
def test_seed_is_accepted_exactly_inside_its_bounds(seed: int) -> None:
    inside = SEED_RANGE[0] <= seed <= SEED_RANGE[1]
    try:
        assert parse_tts({"text": "hi", "seed": seed}, DEFAULTS, fixed_seed).seed == seed
        assert inside
    except ApiError as error:
        assert not inside and error.status == 400


@given(st.text(min_size=1, max_size=80))
def test_text_length_limit_counts_characters(text: str) -> None:
    valid = bool(text.strip()) and len(text) <= DEFAULTS.max_text_chars
    try:
        assert parse_tts({"text": text}, DEFAULTS, fixed_seed).text == text
        assert valid
    except ApiError as error:
        assert not valid and error.status == 400


@pytest.mark.parametrize("raw", [b"{", b"[1, 2]", b'"text"', b'{"text": NaN}', b"\xff\xfe", b""])
def test_bad_json_bodies_are_400(raw: bytes) -> None:
    with pytest.raises(ApiError) as caught:
        decode_json_object(raw)
    assert (caught.value.status, caught.value.code) == (400, "bad_json")


def test_openai_request_maps_input_voice_format_and_stream() -> None:
    body = {
        "model": "tts-1",
        "input": "hi",
        "voice": "bob",
        "response_format": "pcm",
        "speed": 2.0,
        "stream_format": "audio",
        "instructions": "cheerful",
    }
    params = parse_openai_speech(body, DEFAULTS, fixed_seed)
    assert (params.text, params.voice, params.format, params.speed, params.stream) == (
        "hi",
        "bob",
        "pcm",
        2.0,
        True,
    )
    assert (params.nfe, params.seed) == (8, 4242)


def test_openai_request_defaults_to_buffered_wav() -> None:
    params = parse_openai_speech({"model": "tts-1", "input": "hi"}, DEFAULTS, fixed_seed)
    assert (params.format, params.stream, params.voice) == ("wav", False, "default")


@pytest.mark.parametrize("fmt", ["mp3", "opus", "aac", "flac"])
def test_openai_unsupported_response_format_is_422_naming_supported(fmt: str) -> None:
    with pytest.raises(ApiError) as caught:
        parse_openai_speech({"input": "hi", "response_format": fmt}, DEFAULTS, fixed_seed)
    assert caught.value.status == 422 and "wav, pcm" in caught.value.message


def test_openai_sse_stream_format_is_422() -> None:
    with pytest.raises(ApiError) as caught:
        parse_openai_speech({"input": "hi", "stream_format": "sse"}, DEFAULTS, fixed_seed)
    assert caught.value.status == 422


def test_deeply_nested_json_is_a_400_not_a_crash() -> None:
    from ishowttsd.api.errors import ApiError
    from ishowttsd.api.schemas import decode_json_object

    with pytest.raises(ApiError) as caught:
        decode_json_object(b"[" * 100_000)
    assert caught.value.status == 400
