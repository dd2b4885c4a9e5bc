"""Turning failed requests and bad answers into veo3dl errors that hold no secret.

requests' own exceptions quote what they choke on: a header value (the
cookie, the bearer token) or a URL (the api key, a signed URL's
``Signature``).  So their messages never travel on: the veo3dl error says
what kind of failure it was and shows the URL redacted.  Callers raise these
errors outside their ``except`` blocks, so that not even ``__context__``
(which tracebacks print) keeps the original.
"""

from __future__ import annotations

import json
import time
from typing import Any

import requests
import urllib3.exceptions

from veo3dl import _protocol as proto
from veo3dl.exceptions import (
    ApiError,
    AuthError,
    LoginRequired,
    NotFoundError,
    PaginationError,
    ProtocolError,
    RateLimited,
    TransportError,
)

__all__ = [
    "TRANSIENT_ERRORS",
    "answer_error",
    "describe_request_failure",
    "read_json",
    "retryable",
    "retryable_status",
]

# Failures of the connection or the body in flight: another try may well work.
TRANSIENT_ERRORS = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.ContentDecodingError,
    urllib3.exceptions.HTTPError,
)

_DESCRIPTIONS: dict[type[Exception], str] = {
    requests.TooManyRedirects: "too many redirects",
    requests.exceptions.InvalidHeader: "a header value that cannot be sent",
    requests.exceptions.InvalidSchema: "a URL (or redirect) of a scheme that cannot be fetched",
    requests.exceptions.MissingSchema: "a URL (or redirect) without a scheme",
    requests.exceptions.InvalidURL: "a URL (or redirect) that cannot be fetched",
}


def retryable_status(status: int) -> bool:
    """Whether an answer with HTTP *status* is worth trying again: 408 and every 5xx.

    Section 3 of the protocol reference lists "5xx" among the errors the
    service answers, without singling out any code, so all of them are
    treated as the service's passing trouble.  429 is retried too, but after
    the ``Retry-After`` pause (see :func:`retryable`).
    """
    return status == 408 or 500 <= status <= 599


def retryable(error: Exception) -> bool:
    """Whether a request that failed with *error* is worth trying again."""
    if isinstance(error, (TransportError, ProtocolError, RateLimited)):
        return not isinstance(error, PaginationError)
    return isinstance(error, ApiError) and retryable_status(error.status)


def describe_request_failure(exc: Exception) -> str:
    """What went wrong in *exc*, a requests exception, without quoting its message."""
    for kind, text in _DESCRIPTIONS.items():
        if isinstance(exc, kind):
            return f"{text} ({type(exc).__name__})"
    return type(exc).__name__


def answer_error(
    response: requests.Response, body: bytes, shown: str, item: str | None, role: str
) -> Exception:
    """The error for a non-2xx *response* whose first bytes are *body*.

    *shown* is the request URL already redacted; *role* is ``labs`` or
    ``api`` (a refusal from the labs host means the cookie is stale).
    """
    status = response.status_code
    google = proto.parse_google_error(body)
    message = google.message or response.reason or "error"
    context: dict[str, Any] = {
        "status": status,
        "google_status": google.status,
        "reason": google.reason,
        "url": shown,
        "item": item,
    }
    if status == 429:
        retry_after = proto.parse_retry_after(response.headers.get("Retry-After"), now=time.time())
        return RateLimited(f"rate limited: {message}", retry_after=retry_after, **context)
    if status in (401, 403) and role == "labs":
        return LoginRequired(
            f"the Flow session refused the cookie (HTTP {status})", status=status, item=item
        )
    if status == 401:
        return AuthError(
            f"the api host refused the bearer token: {message}", status=status, item=item
        )
    if status == 404:
        return NotFoundError(
            f"not found on Flow: {message}", hint="it may have been deleted", **context
        )
    return ApiError(f"HTTP {status}: {message}", **context)


def read_json(response: requests.Response, where: str) -> Any:
    """The JSON body of *response*, or :class:`ProtocolError` naming *where*."""
    try:
        return json.loads(response.content)
    except RecursionError:
        # json recurses once per level: "[[[[..." deep enough exhausts the stack.
        error = ProtocolError("answer is JSON nested too deeply to read", where=where)
    except ValueError:  # UnicodeDecodeError included
        kind = response.headers.get("Content-Type", "unknown type")
        error = ProtocolError(f"answer is not JSON ({kind})", where=where)
    raise error
