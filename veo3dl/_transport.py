"""The narrow seam between veo3dl and a media service's wire protocol.

Everything above this line (the service, the store, the pool) sees a
:class:`Transport`: a listing of pages, one item's file into a sink, a signed
file URL into a sink.  :class:`~veo3dl.FlowClient` is the transport for
labs.google's 2025 protocol; the 2026 ``flow.google.com`` protocol
(batchexecute RPCs, short-lived signed URLs) would be a second one beside it,
with no change to the pool, the store or the service.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from veo3dl._models import ListingPage, ListingStop
from veo3dl._sinks import Sink

__all__ = ["PageListing", "Transport"]


class PageListing(Protocol):
    """What a transport's listing must offer: pages, then why it stopped."""

    stop: ListingStop | None

    def __iter__(self) -> Iterator[ListingPage]: ...


class Transport(Protocol):
    """What the service needs from a media service client."""

    def iter_pages(self, *, max_pages: int | None = None) -> PageListing:
        """The library page by page, each item once, newest first."""

    def download_signed_url(self, url: str, sink: Sink, *, item: str | None = None) -> int:
        """Stream a signed file URL into *sink*; return the byte count."""

    def close(self) -> None:
        """Release connections."""
