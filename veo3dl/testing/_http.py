"""What an endpoint sees of a request and hands back as an answer.

The endpoints build :class:`Response` values; the server in ``_server`` writes
them, including the misbehaving deliveries (a reset, a truncated or a
dripping body) that fault injection asks for.  Also here: the error bodies of
the two styles the service uses, Google's JSON and Cloud Storage's XML.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Callable, Iterator, Mapping
from typing import Any
from xml.sax.saxutils import escape

import attrs

__all__ = [
    "Delivery",
    "Request",
    "Response",
    "google_error",
    "html_page",
    "json_response",
    "xml_error",
]

_GOOGLE_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "NOT_IMPLEMENTED",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
_XML_CODE = {
    400: "InvalidArgument",
    401: "AuthenticationRequired",
    403: "AccessDenied",
    404: "NoSuchKey",
    416: "InvalidRange",
    429: "SlowDown",
    500: "InternalError",
    503: "ServiceUnavailable",
}


class Delivery(enum.Enum):
    """How the server puts an answer on the wire."""

    NORMAL = "normal"
    TRUNCATE = "truncate"  # full Content-Length, half the body, then close
    RESET = "reset"  # no answer, TCP RST
    DRIP = "drip"  # the body a little at a time


@attrs.frozen
class Request:
    """One HTTP request as received: the raw target, never unquoted."""

    role: str
    method: str
    target: str
    headers: Mapping[str, str]

    @property
    def path(self) -> str:
        """The raw path of the target (before ``?``)."""
        return self.target.partition("?")[0]

    @property
    def query(self) -> str:
        """The raw query string of the target (after ``?``), exactly as sent."""
        return self.target.partition("?")[2]

    def header(self, name: str) -> str | None:
        """The value of header *name* (case-insensitive), or ``None``."""
        return self.headers.get(name.lower())


@attrs.frozen
class Response:
    """An answer: status, headers and a body held in memory or streamed.

    With ``stream`` set, ``length`` is the ``Content-Length`` and the stream
    yields exactly that many bytes.  ``delay`` is waited before answering.
    """

    status: int
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    stream: Callable[[], Iterator[bytes]] | None = None
    length: int | None = None
    delay: float = 0.0
    delivery: Delivery = Delivery.NORMAL
    drip_delay: float = 0.0
    drip_chunk: int = 0
    head_only: bool = False

    @property
    def content_length(self) -> int:
        """The ``Content-Length`` this answer declares."""
        return len(self.body) if self.length is None else self.length

    def chunks(self) -> Iterator[bytes]:
        """The body, piece by piece."""
        if self.stream is not None:
            yield from self.stream()
        elif self.body:
            yield self.body


def json_response(
    payload: Any, status: int = 200, headers: tuple[tuple[str, str], ...] = ()
) -> Response:
    """A JSON answer."""
    body = json.dumps(payload, separators=(",", ":")).encode()
    return Response(status, (("Content-Type", "application/json; charset=UTF-8"), *headers), body)


def google_error(
    code: int,
    message: str,
    *,
    status: str | None = None,
    reason: str | None = None,
    headers: tuple[tuple[str, str], ...] = (),
) -> Response:
    """Google's JSON error: ``{"error": {"code", "message", "status", "details"}}``."""
    error: dict[str, Any] = {
        "code": code,
        "message": message,
        "status": status or _GOOGLE_STATUS.get(code, "UNKNOWN"),
    }
    if reason is not None:
        error["details"] = [
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": reason,
                "domain": "aisandbox-pa.googleapis.com",
            }
        ]
    return json_response({"error": error}, code, headers)


def xml_error(
    code: int,
    message: str,
    *,
    xml_code: str | None = None,
    details: str | None = None,
    headers: tuple[tuple[str, str], ...] = (),
) -> Response:
    """Cloud Storage's XML error: ``<Error><Code>…</Code><Message>…</Message>…``."""
    parts = [
        "<?xml version='1.0' encoding='UTF-8'?><Error>",
        f"<Code>{escape(xml_code or _XML_CODE.get(code, 'Error'))}</Code>",
        f"<Message>{escape(message)}</Message>",
    ]
    if details is not None:
        parts.append(f"<Details>{escape(details)}</Details>")
    parts.append("</Error>")
    return Response(
        code,
        (("Content-Type", "application/xml; charset=UTF-8"), *headers),
        "".join(parts).encode(),
    )


def html_page() -> Response:
    """A 200 answer whose body is an HTML error page instead of what was asked for."""
    body = (
        b"<!DOCTYPE html><html lang=en><meta charset=utf-8>"
        b"<title>Error 502 (Server Error)!!1</title>"
        b"<p><b>502.</b> <ins>That's an error.</ins>"
        b"<p>The server encountered a temporary error and could not complete your request."
        b"<p>Please try again in 30 seconds. <ins>That's all we know.</ins></html>"
    )
    return Response(200, (("Content-Type", "text/html; charset=UTF-8"),), body)
