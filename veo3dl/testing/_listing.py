"""The listing endpoint: ``GET /fx/api/trpc/media.fetchUserHistoryDirectly``.

Pages run newest first.  A page token is an opaque, authenticated encoding of
the position of the last item handed out (create time and name); the next
page holds the items strictly older than that position, so the cursor stays
meaningful while the library changes.  The service's quirks are here too:
``meta`` sent with a cursor yields the first page again, and injected faults
can make a page repeat items or hand back a token already sent.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from datetime import datetime, timezone
from typing import Any
from urllib.parse import parse_qs

from veo3dl.testing._faults import FaultKind
from veo3dl.testing._http import Request, Response, google_error, json_response
from veo3dl.testing._library import EmulatedItem
from veo3dl.testing._state import State

__all__ = ["LISTING_PATH", "listing_response"]

LISTING_PATH = "/fx/api/trpc/media.fetchUserHistoryDirectly"
_MAC_BYTES = 8


class _BadInputError(Exception):
    """The listing's ``input`` was refused; the message says why."""


def _encode_cursor(state: State, item: EmulatedItem) -> str:
    payload = f"{int(item.create_time.timestamp())}:{item.name}".encode()
    mac = hmac.new(state.cursor_secret, payload, hashlib.sha256).digest()[:_MAC_BYTES]
    return base64.urlsafe_b64encode(payload + mac).decode().rstrip("=")


def _decode_cursor(state: State, token: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError) as exc:
        raise _BadInputError("Invalid page token.") from exc
    payload, mac = raw[:-_MAC_BYTES], raw[-_MAC_BYTES:]
    expected = hmac.new(state.cursor_secret, payload, hashlib.sha256).digest()[:_MAC_BYTES]
    if len(raw) <= _MAC_BYTES or not hmac.compare_digest(mac, expected):
        raise _BadInputError("Invalid page token.")
    seconds, _, name = payload.decode().partition(":")
    return datetime.fromtimestamp(int(seconds), tz=timezone.utc), name


def _parse_input(query: str) -> tuple[int, str | None, bool]:
    """Validate the ``input`` parameter: ``(pageSize, cursor, has_meta)``."""
    values = parse_qs(query, keep_blank_values=True).get("input")
    if not values:
        raise _BadInputError("Missing input.")
    try:
        document = json.loads(values[0])
    except ValueError as exc:
        raise _BadInputError("Input is not valid JSON.") from exc
    if not isinstance(document, dict) or not isinstance(document.get("json"), dict):
        raise _BadInputError('Input must be an object with a "json" object.')
    body: dict[str, Any] = document["json"]
    if body.get("type") != "ASSET_MANAGER":
        raise _BadInputError('json.type must be "ASSET_MANAGER".')
    size = body.get("pageSize")
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise _BadInputError("json.pageSize must be a positive integer.")
    cursor = body.get("cursor")
    if cursor is not None and not isinstance(cursor, str):
        raise _BadInputError("json.cursor must be null or a string.")
    return size, cursor, "meta" in document


def _time(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def generation_id(item: EmulatedItem) -> dict[str, str]:
    """The ``mediaGenerationId`` object of *item*."""
    ids = {
        "mediaType": item.media_type,
        "workflowId": item.workflow_id,
        "workflowStepId": "CAE",
        "mediaKey": item.media_key,
    }
    if item.project_id is not None:
        ids["projectId"] = item.project_id
    return ids


def _item_json(state: State, item: EmulatedItem) -> dict[str, Any]:
    media: dict[str, Any] = {"aspectRatio": item.aspect_ratio}
    if item.fife_in_listing:
        media["fifeUrl"] = state.fife_url(item, "listing")
    return {
        "name": item.listing_name,
        "media": {
            "name": item.listing_name,
            item.shape: media,
            "mediaGenerationId": generation_id(item),
        },
        "createTime": _time(item.create_time),
    }


def listing_response(state: State, request: Request) -> Response:
    """Answer one listing request."""
    if state.auth.cookie_state(request.header("cookie")) != "valid":
        return google_error(
            401,
            "Request had invalid authentication credentials.",
            reason="ACCESS_TOKEN_REFRESH_NEEDED",
        )
    if (request.header("content-type") or "").split(";")[0].strip() != "application/json":
        state.deviation("listing", "no content-type: application/json header")
    try:
        size, cursor, has_meta = _parse_input(request.query)
        if has_meta and state.meta_cursor_quirk:
            # The service ignores the cursor when meta rides along.
            cursor = None
        before = None if cursor is None else _decode_cursor(state, cursor)
    except _BadInputError as exc:
        return google_error(400, str(exc), status="INVALID_ARGUMENT")
    back = 0
    if cursor is not None:
        repeat = state.faults.take(FaultKind.REPEAT_ITEMS, "listing")
        back = 0 if repeat is None else repeat.count
    items, more = state.library.page(before, min(size, state.page_cap), back)
    result: dict[str, Any] = {"userWorkflows": [_item_json(state, item) for item in items]}
    if more and items:
        result["nextPageToken"] = _encode_cursor(state, items[-1])
    if cursor is not None and state.faults.take(FaultKind.LOOP_TOKEN, "listing"):
        result["nextPageToken"] = cursor
    return json_response(
        {"result": {"data": {"json": {"result": result, "status": 200, "statusText": "OK"}}}}
    )
