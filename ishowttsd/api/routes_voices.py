"""Voice registry routes: GET/POST /v1/voices, GET/DELETE /v1/voices/{name}.

POST is multipart/form-data with fields name, text (the transcript of the recording) and audio
(the file). Parts are read with a running byte count, so an oversized upload is refused (413)
without being held in memory; the audio checks themselves happen in the store (api/audio.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiohttp import BodyPartReader, web

from ishowttsd.api.errors import bad_request, too_large, unsupported_media

if TYPE_CHECKING:
    from ishowttsd.api.app import AppDeps

UPLOAD_FIELDS = ("name", "text", "audio")
READ_CHUNK_BYTES = 64 * 1024


@dataclass(frozen=True)
class VoiceForm:
    name: str
    text: str
    audio: bytes


async def read_part(part: BodyPartReader, limit: int) -> bytes:
    """The part's bytes; 413 as soon as they pass `limit`."""
    data = bytearray()
    while chunk := await part.read_chunk(READ_CHUNK_BYTES):
        data += chunk
        if len(data) > limit:
            raise too_large(f"form field '{part.name}' exceeds {limit} bytes")
    return bytes(data)


def _text(raw: bytes, field: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise bad_request("invalid_field", f"form field '{field}' is not UTF-8 text") from exc


def _field_limits(max_upload_bytes: int, max_body_bytes: int) -> Mapping[str, int]:
    return {"name": max_body_bytes, "text": max_body_bytes, "audio": max_upload_bytes}


async def read_fields(request: web.Request, limits: Mapping[str, int]) -> dict[str, bytes]:
    """Each expected part's bytes; 400 for unknown or repeated fields, ValueError if the body is malformed."""
    fields: dict[str, bytes] = {}
    reader = await request.multipart()
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader) or part.name not in limits or part.name in fields:
            field = getattr(part, "name", "")
            raise bad_request("invalid_field", f"unexpected or repeated form field {field!r}; "
                              f"send each of {', '.join(UPLOAD_FIELDS)} once")
        fields[part.name] = await read_part(part, limits[part.name])
    return fields


async def read_voice_form(request: web.Request, max_upload_bytes: int, max_body_bytes: int) -> VoiceForm:
    """Parse the multipart upload: 415 if not multipart, 400 for unknown/missing/repeated fields."""
    if request.content_type != "multipart/form-data":
        raise unsupported_media("unsupported_media_type", "send the voice as multipart/form-data "
                                "with fields name, text and audio")
    try:
        fields = await read_fields(request, _field_limits(max_upload_bytes, max_body_bytes))
    except ValueError as exc:  # aiohttp: no or wrong boundary, body cut short ("Reading after EOF")
        raise bad_request("malformed_multipart", f"the multipart body is malformed: {exc}") from exc
    missing = [name for name in UPLOAD_FIELDS if name not in fields]
    if missing:
        raise bad_request("missing_field", f"missing form field(s): {', '.join(missing)}")
    return VoiceForm(_text(fields["name"], "name"), _text(fields["text"], "text"), fields["audio"])


class VoiceHandlers:
    """Handlers bound to the app's dependencies; store calls run in a thread (file I/O, decoding)."""

    def __init__(self, deps: AppDeps) -> None:
        self._deps = deps

    async def list_voices(self, request: web.Request) -> web.Response:
        voices = await asyncio.to_thread(self._deps.voices.list)
        return web.json_response({"voices": [voice.to_json() for voice in voices]})

    async def get_voice(self, request: web.Request) -> web.Response:
        info = await asyncio.to_thread(self._deps.voices.info, request.match_info["name"])
        return web.json_response(info.to_json())

    async def add_voice(self, request: web.Request) -> web.Response:
        limits = self._deps.get_config().limits
        most = limits.max_upload_bytes + 2 * limits.max_body_bytes  # audio + name + text + framing
        if request.content_length is not None and request.content_length > most:
            raise too_large(f"the upload has {request.content_length} bytes; "
                            f"the audio limit is {limits.max_upload_bytes}")
        form = await read_voice_form(request, limits.max_upload_bytes, limits.max_body_bytes)
        info = await asyncio.to_thread(self._deps.voices.add, form.name, form.audio, form.text)
        return web.json_response(info.to_json(), status=201)

    async def remove_voice(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        await asyncio.to_thread(self._deps.voices.remove, name)
        return web.json_response({"deleted": name})


def routes(deps: AppDeps) -> list[web.RouteDef]:
    handlers = VoiceHandlers(deps)
    return [
        web.get("/v1/voices", handlers.list_voices),
        web.post("/v1/voices", handlers.add_voice),
        web.get("/v1/voices/{name}", handlers.get_voice),
        web.delete("/v1/voices/{name}", handlers.remove_voice),
    ]
