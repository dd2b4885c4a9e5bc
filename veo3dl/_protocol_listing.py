"""The listing half of the protocol (section 2): page requests and page answers.

Pure functions, like the rest of :mod:`veo3dl._protocol`, which re-exports
them: build the ``input`` of a page request, and turn an answer into parsed
items, a malformed count and the next token.  Whatever JSON arrives, the
parsers raise only :class:`~veo3dl.exceptions.ProtocolError`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote

import attrs

from veo3dl._models import MediaItem, MediaType
from veo3dl.exceptions import ProtocolError

__all__ = [
    "LISTING_PATH",
    "ParsedPage",
    "clean_name",
    "listing_input",
    "listing_url",
    "optional_str",
    "parse_listing",
    "parse_media_item",
    "parse_time",
]

LISTING_PATH = "/fx/api/trpc/media.fetchUserHistoryDirectly"
_WHITESPACE = re.compile(r"\s+")


def listing_input(cursor: str | None, page_size: int) -> str:
    """The ``input`` query value of one listing request (section 2).

    The first page sends ``meta``; every later page sends the cursor and no
    ``meta`` key at all, since ``meta`` with a cursor makes the service answer
    with the first page again.
    """
    body: dict[str, Any] = {
        "json": {
            "type": "ASSET_MANAGER",
            "pageSize": page_size,
            "responseScope": "RESPONSE_SCOPE_UNSPECIFIED",
            "cursor": cursor,
        }
    }
    if cursor is None:
        body["meta"] = {"values": {"cursor": ["undefined"]}}
    return json.dumps(body, separators=(",", ":"))


def listing_url(labs_url: str, cursor: str | None, page_size: int) -> str:
    """The full URL of one listing page."""
    encoded = quote(listing_input(cursor, page_size), safe="")
    return f"{labs_url}{LISTING_PATH}?input={encoded}"


@attrs.frozen
class ParsedPage:
    """What one listing answer holds: parsed items, malformed count, next token."""

    items: tuple[MediaItem, ...]
    skipped: int
    next_token: str | None = attrs.field(repr=lambda t: "None" if t is None else "'…'")


def _dig(obj: object, path: tuple[str, ...], where: str) -> Any:
    for key in path:
        if not isinstance(obj, Mapping) or key not in obj:
            raise ProtocolError(f"missing {key!r}", where=where)
        obj = obj[key]
    return obj


def parse_listing(payload: object) -> ParsedPage:
    """Parse one listing answer.

    The envelope must be right, or :class:`ProtocolError` is raised.  Items
    that cannot be parsed are skipped and counted, never fatal: one odd item
    must not hide the rest of the library.
    """
    where = "listing result.data.json.result"
    result = _dig(payload, ("result", "data", "json", "result"), where)
    if not isinstance(result, Mapping):
        raise ProtocolError("expected an object", where=where)
    _check_trpc_status(_dig(payload, ("result", "data", "json"), where))
    workflows = result.get("userWorkflows", [])
    if workflows is None:
        workflows = []
    if not isinstance(workflows, list):
        raise ProtocolError("userWorkflows is not a list", where=where)
    # Absent on the last page (section 2); null or "" are read the same way
    # rather than failing a sync over a spelling of "no more pages".
    token = result.get("nextPageToken")
    if token is not None and not isinstance(token, str):
        raise ProtocolError("nextPageToken is not a string", where=where)
    token = token or None
    items: list[MediaItem] = []
    skipped = 0
    for entry in workflows:
        try:
            items.append(parse_media_item(entry))
        except ProtocolError:
            skipped += 1
    return ParsedPage(items=tuple(items), skipped=skipped, next_token=token)


def _check_trpc_status(envelope: Mapping[str, Any]) -> None:
    """Refuse a page whose tRPC envelope reports a failure next to a result."""
    status = envelope.get("status")
    if status is None or (isinstance(status, int) and 200 <= status < 300):
        return
    text = envelope.get("statusText")
    detail = f" {text[:60]!r}" if isinstance(text, str) else ""
    raise ProtocolError(
        f"the page reports status {str(status)[:20]}{detail}", where="listing result.data.json"
    )


def clean_name(value: object, where: str) -> str:
    """A media name with stray whitespace and line breaks removed (section 2)."""
    if not isinstance(value, str):
        raise ProtocolError("name is not a string", where=where)
    name = _WHITESPACE.sub("", value)
    if not name or name in {".", ".."} or "\x00" in name:
        raise ProtocolError("name is empty or not a usable identifier", where=where)
    return name


def optional_str(obj: Mapping[str, Any], key: str) -> str | None:
    """``obj[key]`` when it is a non-empty string, else None."""
    value = obj.get(key)
    return value if isinstance(value, str) and value else None


def parse_time(value: object, where: str) -> datetime:
    """An RFC 3339 time (``2025-10-29T13:56:15Z``, with or without fraction) as aware UTC."""
    if not isinstance(value, str):
        raise ProtocolError("time is not a string", where=where)
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    # fromisoformat in 3.10 takes at most 6 fractional digits.
    text = re.sub(r"(\.\d{6})\d+", r"\1", text)
    try:
        parsed = datetime.fromisoformat(text)
        if parsed.tzinfo is None:
            raise ProtocolError("time has no zone", where=where)
        # Near year 1 or 9999 an offset pushes the UTC time out of range.
        return parsed.astimezone(timezone.utc)
    except (ValueError, OverflowError):
        raise ProtocolError(f"not an RFC 3339 time: {value[:40]!r}", where=where) from None


def parse_media_item(entry: object) -> MediaItem:
    """Parse one ``userWorkflows`` entry into a :class:`MediaItem`."""
    where = "listing item"
    if not isinstance(entry, Mapping):
        raise ProtocolError("item is not an object", where=where)
    media = entry.get("media")
    if not isinstance(media, Mapping):
        raise ProtocolError("missing media", where=where)
    name = clean_name(media.get("name", entry.get("name")), where)
    where = f"listing item {name[:60]}"
    generation = media.get("mediaGenerationId")
    if not isinstance(generation, Mapping):
        raise ProtocolError("missing mediaGenerationId", where=where)
    try:
        media_type = MediaType(generation.get("mediaType"))
    except ValueError:
        raise ProtocolError("unknown mediaType", where=where) from None
    media_key = optional_str(generation, "mediaKey")
    if media_key is None:
        raise ProtocolError("missing mediaKey", where=where)
    body: Mapping[str, Any] = next(
        (
            media[k]
            for k in ("video", "image", "userUploadedImage")
            if isinstance(media.get(k), Mapping)
        ),
        {},
    )
    fife_url = optional_str(body, "fifeUrl")
    return MediaItem(
        name=name,
        media_type=media_type,
        media_key=media_key,
        create_time=parse_time(entry.get("createTime"), where),
        workflow_id=optional_str(generation, "workflowId"),
        project_id=optional_str(generation, "projectId"),
        aspect_ratio=optional_str(body, "aspectRatio"),
        fife_url=fife_url if fife_url and fife_url.startswith(("https://", "http://")) else None,
    )
