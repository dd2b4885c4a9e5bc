"""Google Flow's 2025 protocol as pure functions: build requests, parse answers.

Nothing here does I/O.  The client (``_client.py``) sends what these
functions build and hands back what arrives; every shape check lives here so
that it can be tested, and fuzzed, without a server.  Parsers raise only
:class:`~veo3dl.exceptions.ProtocolError` (or an :class:`AuthError` for the
session), whatever JSON they are given.

Facts come from ``flow-protocol.md``; the sections are cited where they
matter.  The listing half lives in :mod:`veo3dl._protocol_listing` and is
re-exported here, so that callers see one protocol module.
"""

from __future__ import annotations

import email.utils
import json
import math
import re
from collections.abc import Mapping
from datetime import datetime, timezone
from urllib.parse import quote

import attrs

from veo3dl._credentials import header_safe
from veo3dl._models import MediaType
from veo3dl._protocol_listing import (
    LISTING_PATH,
    ParsedPage,
    clean_name,
    listing_input,
    listing_url,
    optional_str,
    parse_listing,
    parse_media_item,
    parse_time,
)
from veo3dl._redaction import redact_url
from veo3dl.exceptions import LoginRequired, ProtocolError

__all__ = [
    "LISTING_PATH",
    "MEDIA_PATH",
    "PAYLOAD_KEYS",
    "SESSION_PATH",
    "GoogleError",
    "MediaPayload",
    "ParsedPage",
    "SessionToken",
    "api_headers",
    "clean_name",
    "listing_input",
    "listing_url",
    "media_url",
    "parse_google_error",
    "parse_listing",
    "parse_media_item",
    "parse_media_payload",
    "parse_retry_after",
    "parse_session",
    "quote_name",
    "signed_url_expires",
]

SESSION_PATH = "/fx/api/auth/session"
MEDIA_PATH = "/v1/media/"
LABS_ORIGIN = "https://labs.google"

# The JSON keys whose string value is the file itself, base64-encoded (section 3).
PAYLOAD_KEYS = frozenset({"image", "encodedImage", "encodedVideo"})

# RFC 3986 pchar minus pct-encoded: unreserved / sub-delims / ":" / "@".
# "$" is legal here and the service answers 400 when it arrives as "%24".
_PCHAR_SAFE = "-._~!$&'()*+,;=:@"


# -------------------------------------------------------------- one item


def quote_name(name: str) -> str:
    """A media name as one raw path segment (section 3).

    Characters legal in an RFC 3986 path segment go as they are (``$``
    included); only what cannot stand there (``/ ? # %``, space, controls,
    non-ASCII) is percent-escaped.
    """
    return quote(name, safe=_PCHAR_SAFE)


def media_url(api_url: str, name: str, api_key: str) -> str:
    """The URL of one media item on the api host."""
    key = quote(api_key, safe="")
    return f"{api_url}{MEDIA_PATH}{quote_name(name)}?key={key}&clientContext.tool=PINHOLE"


def api_headers(access_token: str) -> dict[str, str]:
    """Headers the web app sends to the api host."""
    return {
        "Authorization": f"Bearer {access_token}",
        "origin": LABS_ORIGIN,
        "referer": f"{LABS_ORIGIN}/",
        "accept": "application/json",
    }


@attrs.frozen
class MediaPayload:
    """The parsed fields of one media answer (the file itself is handled apart).

    ``shape`` names where the file was: ``userUploadedImage.image``,
    ``image.encodedImage`` or ``video.encodedVideo``.
    """

    name: str
    shape: str
    media_type: MediaType | None
    fife_url: str | None = attrs.field(repr=lambda u: "None" if u is None else repr(redact_url(u)))
    seed: int | None = None
    prompt: str | None = None
    model: str | None = None
    aspect_ratio: str | None = None


_SHAPES = (
    ("userUploadedImage", "image", "modelNameType"),
    ("image", "encodedImage", "modelNameType"),
    ("video", "encodedVideo", "model"),
)


def parse_media_payload(payload: object, *, name: str) -> tuple[MediaPayload, str | None]:
    """Parse a media answer into its fields and the base64 text of the file.

    The base64 text is ``None`` when it was streamed out of the body already
    (the streaming extractor leaves an empty string in its place).
    """
    where = f"media answer for {name[:60]}"
    if not isinstance(payload, Mapping):
        raise ProtocolError("answer is not an object", where=where)
    for container, data_key, model_key in _SHAPES:
        body = payload.get(container)
        if isinstance(body, Mapping) and data_key in body:
            data = body[data_key]
            if not isinstance(data, str):
                raise ProtocolError(f"{container}.{data_key} is not a string", where=where)
            generation = payload.get("mediaGenerationId")
            media_type: MediaType | None = None
            if isinstance(generation, Mapping):
                try:
                    media_type = MediaType(generation.get("mediaType"))
                except ValueError:
                    media_type = None
            seed = body.get("seed")
            fife = optional_str(body, "fifeUrl")
            info = MediaPayload(
                name=name,
                shape=f"{container}.{data_key}",
                media_type=media_type,
                fife_url=fife if fife and fife.startswith(("https://", "http://")) else None,
                seed=seed if isinstance(seed, int) and not isinstance(seed, bool) else None,
                prompt=optional_str(body, "prompt"),
                model=optional_str(body, model_key) or optional_str(body, "model"),
                aspect_ratio=optional_str(body, "aspectRatio"),
            )
            return info, (data or None)
    raise ProtocolError(
        "no userUploadedImage.image, image.encodedImage or video.encodedVideo", where=where
    )


@attrs.frozen
class GoogleError:
    """The fields of Google's error body, each ``None`` when absent."""

    code: int | None
    status: str | None
    reason: str | None
    message: str | None


def parse_google_error(body: bytes) -> GoogleError:
    """Read ``{"error": {"code", "message", "status", "details": [{"reason"}]}}``, leniently."""
    try:
        payload = json.loads(body.decode("utf-8", "replace"))
    except (ValueError, RecursionError):  # deep nesting is as unreadable as bad JSON
        return GoogleError(None, None, None, None)
    error = payload.get("error") if isinstance(payload, Mapping) else None
    if not isinstance(error, Mapping):
        return GoogleError(None, None, None, None)
    reason = None
    details = error.get("details")
    if isinstance(details, list):
        for detail in details:
            if isinstance(detail, Mapping) and isinstance(detail.get("reason"), str):
                reason = detail["reason"]
                break
    code = error.get("code")
    message = error.get("message")
    status = error.get("status")
    return GoogleError(
        code=code if isinstance(code, int) and not isinstance(code, bool) else None,
        status=status if isinstance(status, str) else None,
        reason=reason,
        message=message[:300] if isinstance(message, str) else None,
    )


# ---------------------------------------------------------------- session


@attrs.frozen(repr=False)
class SessionToken:
    """A bearer token minted from the session cookie, and when it expires."""

    access_token: str
    expires: datetime | None

    def __repr__(self) -> str:
        return f"SessionToken(access_token='***', expires={self.expires!r})"


def parse_session(payload: object) -> SessionToken:
    """Parse the session endpoint's answer (section 1).

    ``"error": "ACCESS_TOKEN_REFRESH_NEEDED"`` (or no token at all) means the
    cookie is stale: :class:`LoginRequired`, not something to retry.
    """
    where = "session answer"
    if not isinstance(payload, Mapping):
        raise ProtocolError("answer is not an object", where=where)
    if payload.get("error") == "ACCESS_TOKEN_REFRESH_NEEDED":
        raise LoginRequired()
    token = payload.get("access_token")
    if not isinstance(token, str) or not token:
        if "user" not in payload or payload.get("error"):
            raise LoginRequired("the Flow session holds no access token (signed out?)")
        raise ProtocolError("missing access_token", where=where)
    if not header_safe(token):
        # It goes into an Authorization header: a line break would split it.
        raise ProtocolError("access_token holds characters a header cannot carry", where=where)
    expires_raw = payload.get("expires")
    expires = parse_time(expires_raw, where) if isinstance(expires_raw, str) else None
    return SessionToken(access_token=token, expires=expires)


# ------------------------------------------------------------ signed URLs


_EXPIRES = re.compile(r"[?&]Expires=(\d{1,12})(?:&|#|$)")


def signed_url_expires(url: str) -> float | None:
    """The ``Expires`` of a signed URL in unix seconds, read without decoding the URL."""
    match = _EXPIRES.search(url)
    return float(match.group(1)) if match else None


def parse_retry_after(value: str | None, *, now: float) -> float | None:
    """``Retry-After`` as seconds from *now*: delta-seconds or an HTTP date."""
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        seconds = when.timestamp() - now
    if math.isnan(seconds) or math.isinf(seconds):
        return None
    return max(0.0, seconds)
