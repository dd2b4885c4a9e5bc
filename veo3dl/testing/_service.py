"""The emulated service: routes a request to its endpoint, counts it, applies faults.

Every request that reaches here is counted (per endpoint and per item),
faulted ones included, before any fault or validation can refuse it, so a
test can assert both "retried three times" and "never asked".  Right after
being counted, a request a :class:`~veo3dl.testing._state.RequestHold`
catches waits there until the hold is released.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Iterator

import attrs

from veo3dl.testing._faults import Fault, FaultKind
from veo3dl.testing._files import file_target, files_response
from veo3dl.testing._http import (
    Delivery,
    Request,
    Response,
    google_error,
    html_page,
    json_response,
    xml_error,
)
from veo3dl.testing._listing import LISTING_PATH, listing_response
from veo3dl.testing._media_api import media_name, media_response
from veo3dl.testing._state import State

__all__ = ["SESSION_PATH", "Service"]

SESSION_PATH = "/fx/api/auth/session"
_FILES_ROLE = "files"


def _limited(response: Response, limit: int) -> Iterator[bytes]:
    left = limit
    for chunk in response.chunks():
        if left <= 0:
            return
        yield chunk[:left]
        left -= len(chunk)


def _fault_answer(fault: Fault, role: str) -> Response | None:
    """The answer that replaces the normal one, or ``None`` for delivery faults."""
    xml = role == _FILES_ROLE
    if fault.kind is FaultKind.STATUS:
        message = fault.message or f"Injected error {fault.code}."
        if xml:
            return xml_error(fault.code, message, xml_code=fault.google_status or fault.reason)
        return google_error(fault.code, message, status=fault.google_status, reason=fault.reason)
    if fault.kind is FaultKind.RATE_LIMITED:
        headers = () if fault.retry_after is None else (("Retry-After", fault.retry_after),)
        if xml:
            return xml_error(429, "Too many requests, please slow down.", headers=headers)
        return google_error(
            429,
            "Resource has been exhausted (e.g. check quota).",
            status="RESOURCE_EXHAUSTED",
            reason=fault.reason,
            headers=headers,
        )
    if fault.kind is FaultKind.HTML:
        return html_page()
    if fault.kind is FaultKind.JSON_200:
        return json_response(
            {
                "error": {
                    "code": 403,
                    "message": "Anonymous caller does not have storage.objects.get access.",
                    "status": "PERMISSION_DENIED",
                }
            }
        )
    if fault.kind is FaultKind.RESET:
        return Response(500, delivery=Delivery.RESET)
    return None


def _deliver(fault: Fault, response: Response) -> Response:
    """Apply a delivery fault (truncate, drip, short length) to a normal answer."""
    if fault.kind is FaultKind.TRUNCATE:
        return attrs.evolve(response, delivery=Delivery.TRUNCATE)
    if fault.kind is FaultKind.DRIP:
        return attrs.evolve(
            response, delivery=Delivery.DRIP, drip_delay=fault.seconds, drip_chunk=fault.chunk
        )
    if fault.kind is FaultKind.SHORT_LENGTH:
        short = max(1, response.content_length // 2)
        return attrs.evolve(
            response, body=b"", stream=lambda: _limited(response, short), length=short
        )
    return response


class Service:
    """Answers every request of one emulator, on all three roles."""

    def __init__(self, state: State, latency: float) -> None:
        self.state = state
        self.latency = latency
        self._lock = threading.Lock()
        self._counts: collections.Counter[tuple[str, str | None]] = collections.Counter()

    def __repr__(self) -> str:
        return f"Service(latency={self.latency})"

    def requests(self, endpoint: str | None = None, name: str | None = None) -> int:
        """How many requests reached *endpoint* (any if ``None``) for item *name*."""
        with self._lock:
            return sum(
                count
                for (ep, item), count in self._counts.items()
                if endpoint in (None, ep) and name in (None, item)
            )

    def reset_counters(self) -> None:
        """Forget every counted request."""
        with self._lock:
            self._counts.clear()

    def _classify(self, request: Request) -> tuple[str, str | None]:
        path = request.path
        if request.role == "labs":
            if path == SESSION_PATH:
                return "session", None
            if path == LISTING_PATH:
                return "listing", None
        elif request.role == "api":
            name = media_name(path)
            if name is not None:
                return "media", name
        elif request.role == _FILES_ROLE:
            target = file_target(path)
            if target is not None:
                item = self.state.library.by_media_key(target[1])
                return "fife", None if item is None else item.name
        return "other", None

    def __call__(self, request: Request) -> Response:
        """Answer *request*."""
        endpoint, name = self._classify(request)
        with self._lock:
            self._counts[endpoint, name] += 1
        self.state.holds.arrive(endpoint, name)
        if endpoint == "other":
            if request.role == _FILES_ROLE:
                return xml_error(404, "No such object.", xml_code="NoSuchKey")
            return google_error(404, "Requested entity was not found.")
        if request.method not in ("GET", "HEAD"):
            return google_error(405, "Method not allowed.", status="INVALID_ARGUMENT")
        delay, fault = self.state.faults.for_request(endpoint, name)
        answer = None if fault is None else _fault_answer(fault, request.role)
        if answer is None:
            answer = self._endpoint(endpoint, request)
            if fault is not None:
                answer = _deliver(fault, answer)
        return attrs.evolve(answer, delay=self.latency + delay, head_only=request.method == "HEAD")

    def _endpoint(self, endpoint: str, request: Request) -> Response:
        if endpoint == "session":
            return self.state.auth.session_response(request.header("cookie"))
        if endpoint == "listing":
            return listing_response(self.state, request)
        if endpoint == "media":
            return media_response(self.state, request)
        return files_response(self.state, request)
