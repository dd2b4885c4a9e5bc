"""The media endpoint: ``GET /v1/media/{name}?key=…`` with a bearer token.

The answer is JSON with the whole file inside as base64, so it is streamed:
the JSON is rendered around a marker, split there, and the base64 is encoded
chunk by chunk (each a multiple of 3 bytes, so the pieces concatenate to one
valid base64 string).  The ``Content-Length`` is known up front.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, unquote

from veo3dl.testing._auth import BearerCheck
from veo3dl.testing._http import Request, Response, google_error
from veo3dl.testing._library import EmulatedItem
from veo3dl.testing._listing import generation_id
from veo3dl.testing._media import MediaBlob
from veo3dl.testing._state import State

__all__ = ["MEDIA_PREFIX", "media_name", "media_response"]

MEDIA_PREFIX = "/v1/media/"
_MARK = "@@veo3dl-base64@@"
_RAW_CHUNK = 3 * 64 * 1024


def media_name(raw_path: str) -> str | None:
    """The item name a media path asks for (percent-escapes decoded), or ``None``."""
    if not raw_path.startswith(MEDIA_PREFIX):
        return None
    return unquote(raw_path[len(MEDIA_PREFIX) :])


def _payload(state: State, item: EmulatedItem) -> dict[str, Any]:
    fife = state.fife_url(item, "media")
    ids = generation_id(item)
    if item.shape == "userUploadedImage":
        inner: dict[str, Any] = {
            "image": _MARK,
            "mediaGenerationId": item.name,
            "fifeUrl": fife,
            "aspectRatio": item.aspect_ratio,
        }
    elif item.shape == "image":
        inner = {
            "encodedImage": _MARK,
            "fifeUrl": fife,
            "seed": item.seed,
            "prompt": item.prompt,
            "modelNameType": item.model,
            "aspectRatio": item.aspect_ratio,
        }
    else:
        inner = {
            "encodedVideo": _MARK,
            "seed": item.seed,
            "prompt": item.prompt,
            "fifeUrl": fife,
            "servingBaseUri": state.fife_url(item, "media", still=True),
            "model": item.model,
            "aspectRatio": item.aspect_ratio,
        }
    return {"name": item.name, item.shape: inner, "mediaGenerationId": ids}


def _stream(prefix: bytes, blob: MediaBlob, suffix: bytes) -> Iterator[bytes]:
    yield prefix
    for chunk in blob.iter_chunks(chunk_size=_RAW_CHUNK):
        yield base64.b64encode(chunk)
    yield suffix


def media_response(state: State, request: Request) -> Response:
    """Answer one media request."""
    raw = request.path[len(MEDIA_PREFIX) :]
    if "%24" in raw.lower():
        # The service refuses an escaped "$" in the name.
        return google_error(400, "Request contains an invalid argument.")
    params = parse_qs(request.query, keep_blank_values=True)
    key = params.get("key", [request.header("x-goog-api-key")])[0]
    if not state.auth.key_ok(key):
        return google_error(
            400, "API key not valid. Please pass a valid API key.", reason="API_KEY_INVALID"
        )
    check = state.auth.use_bearer(request.header("authorization"))
    if check is not BearerCheck.OK:
        reason = "CREDENTIALS_MISSING" if check is BearerCheck.MISSING else "ACCESS_TOKEN_EXPIRED"
        return google_error(
            401,
            "Request had invalid authentication credentials. Expected OAuth 2 access token, "
            "login cookie or other valid authentication credential.",
            reason=reason,
        )
    _note_deviations(state, request, params)
    name = unquote(raw)
    item = state.library.get(name) if name else None
    if item is None:
        return google_error(404, "Requested entity was not found.")
    blob = state.library.blob(item)
    rendered = json.dumps(_payload(state, item), separators=(",", ":"))
    before, _, after = rendered.partition(_MARK)
    prefix, suffix = before.encode(), after.encode()
    length = len(prefix) + 4 * -(-blob.size // 3) + len(suffix)
    return Response(
        200,
        (("Content-Type", "application/json; charset=UTF-8"),),
        stream=lambda: _stream(prefix, blob, suffix),
        length=length,
    )


def _note_deviations(state: State, request: Request, params: dict[str, list[str]]) -> None:
    # What the web app sends besides the credentials (section 3).  The real
    # service's answer without them is not known, so they are noted, not refused.
    if params.get("clientContext.tool") != ["PINHOLE"]:
        state.deviation("media", "no clientContext.tool=PINHOLE in the query")
    if request.header("origin") != "https://labs.google":
        state.deviation("media", "no origin: https://labs.google header")
    if request.header("referer") != "https://labs.google/":
        state.deviation("media", "no referer: https://labs.google/ header")
