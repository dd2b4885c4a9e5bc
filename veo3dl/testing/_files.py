"""The files role: signed file URLs, answered like Cloud Storage.

No authentication header; the signed query is the credential, checked on the
raw query string.  Files are streamed from their blob with a strong
``ETag``, ``Accept-Ranges: bytes``, single byte ranges (``206``) and
``If-Range``.  Errors are Cloud Storage's XML.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from email.utils import format_datetime

from veo3dl.testing._http import Request, Response, xml_error
from veo3dl.testing._library import EmulatedItem
from veo3dl.testing._media import MediaBlob
from veo3dl.testing._signing import Verdict
from veo3dl.testing._state import FILES_PREFIX, State

__all__ = ["file_target", "files_response"]

_PATH = re.compile(re.escape(FILES_PREFIX) + r"(image|video)/([0-9A-Za-z-]+)")
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


def file_target(raw_path: str) -> tuple[str, str] | None:
    """``(kind, media_key)`` of a files-role path, or ``None`` if it is not one."""
    match = _PATH.fullmatch(raw_path)
    return None if match is None else (match[1], match[2])


def _blob_for(state: State, item: EmulatedItem, kind: str) -> MediaBlob | None:
    if item.media_type == "VIDEO":
        # A video's "image" is the still its servingBaseUri points at.
        return state.library.blob(item) if kind == "video" else state.library.thumbnail(item)
    return state.library.blob(item) if kind == "image" else None


def _byte_range(header: str | None, size: int) -> tuple[int, int] | str | None:
    """``(first, last)`` of a single satisfiable range, ``None`` to ignore, ``"416"``."""
    match = _RANGE.fullmatch((header or "").strip())
    if match is None or not (match[1] or match[2]):
        return None
    if not match[1]:
        length = int(match[2])
        if length == 0:
            return "416"
        return max(0, size - length), size - 1
    first = int(match[1])
    if match[2] and int(match[2]) < first:
        return None  # syntactically invalid: ignored, as RFC 9110 says
    if first >= size:
        return "416"
    return first, min(int(match[2]) if match[2] else size - 1, size - 1)


def files_response(state: State, request: Request) -> Response:
    """Answer one request for a signed file URL."""
    target = file_target(request.path)
    if target is None:
        return xml_error(404, "No such object.")
    verdict, expires = state.signer.verify(request.path, request.query, state.clock())
    if verdict is Verdict.BAD_SIGNATURE:
        return xml_error(
            403,
            "Access denied.",
            xml_code="SignatureDoesNotMatch",
            details="The request signature we calculated does not match the signature you "
            "provided. Check your Google secret key and signing method.",
        )
    if verdict is Verdict.EXPIRED:
        when = datetime.fromtimestamp(expires, tz=timezone.utc).strftime("%a, %d %b %Y %H:%M:%S")
        return xml_error(
            400,
            "Invalid argument.",
            xml_code="ExpiredToken",
            details=f"The provided token has expired. Request signature expired at: {when} GMT",
        )
    item = state.library.by_media_key(target[1])
    blob = None if item is None else _blob_for(state, item, target[0])
    if item is None or blob is None:
        return xml_error(404, "No such object.", xml_code="NoSuchKey")
    headers = [
        ("Content-Type", blob.mime_type),
        ("ETag", blob.etag),
        ("Accept-Ranges", "bytes"),
        ("Last-Modified", format_datetime(item.create_time, usegmt=True)),
        ("Cache-Control", "private, max-age=0"),
    ]
    wanted = _byte_range(request.header("range"), blob.size)
    if_range = request.header("if-range")
    if if_range is not None and if_range.strip() != blob.etag:
        wanted = None
    if wanted == "416":
        return xml_error(
            416,
            "The requested range cannot be satisfied.",
            headers=(("Content-Range", f"bytes */{blob.size}"),),
        )
    if isinstance(wanted, tuple):
        first, last = wanted
        headers.append(("Content-Range", f"bytes {first}-{last}/{blob.size}"))
        return Response(
            206,
            tuple(headers),
            stream=lambda: blob.iter_chunks(first, last + 1),
            length=last + 1 - first,
        )
    return Response(200, tuple(headers), stream=blob.iter_chunks, length=blob.size)
