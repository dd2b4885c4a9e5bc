"""The values veo3dl passes around: listed media items and listing pages.

Plain frozen attrs classes with no behaviour beyond small derived properties,
so they pickle across processes and compare by value.
"""

from __future__ import annotations

import enum
from datetime import datetime

import attrs

from veo3dl._redaction import redact_url

__all__ = ["ListingPage", "ListingStop", "MediaItem", "MediaType"]


def _optional_url_repr(url: str | None) -> str:
    return "None" if url is None else repr(redact_url(url))


class MediaType(str, enum.Enum):
    """What a media item is, as Flow's ``mediaGenerationId.mediaType`` says."""

    IMAGE = "IMAGE"
    VIDEO = "VIDEO"

    def __str__(self) -> str:
        return self.value


@attrs.frozen
class MediaItem:
    """One item of the user's Flow library, as the listing describes it.

    ``name`` is Flow's opaque identifier (stray whitespace removed, otherwise
    untouched); ``create_time`` is an aware UTC datetime; ``fife_url`` is the
    signed file URL when the listing carried one.
    """

    name: str
    media_type: MediaType
    media_key: str
    create_time: datetime
    workflow_id: str | None = None
    project_id: str | None = None
    aspect_ratio: str | None = None
    fife_url: str | None = attrs.field(default=None, repr=_optional_url_repr)


class ListingStop(str, enum.Enum):
    """Why a listing ended.

    Only :attr:`END` means the whole library was seen.  A loop guard
    (:attr:`REPEATED_TOKEN`, :attr:`ALL_SEEN`) stops a listing that went
    round in circles: whatever lay past the loop was never listed, so such a
    listing is *not* complete and a sync that ends on one marks nothing
    missing.  :attr:`PAGE_LIMIT` means the listing was cut short.
    """

    END = "end"
    """The last page carried no ``nextPageToken``."""
    REPEATED_TOKEN = "repeated_token"  # noqa: S105 - not a secret
    """The service sent a page token it had sent before (loop guard)."""
    ALL_SEEN = "all_seen"
    """A whole page repeated items already listed (loop guard)."""
    PAGE_LIMIT = "page_limit"
    """The page bound was reached before the listing ended."""

    @property
    def complete(self) -> bool:
        """True when the listing saw the whole library (it ended with no ``nextPageToken``)."""
        return self is ListingStop.END

    @property
    def loop_guard(self) -> bool:
        """True when a loop guard, rather than the service, ended the listing."""
        return self in (ListingStop.REPEATED_TOKEN, ListingStop.ALL_SEEN)

    def __str__(self) -> str:
        return self.value


@attrs.frozen
class ListingPage:
    """One page of the listing.

    ``number`` counts from 1.  ``items`` are the well-formed items of the page
    not already yielded by an earlier page; ``repeated`` counts those dropped
    as repeats and ``skipped`` those too malformed to parse.
    """

    number: int
    items: tuple[MediaItem, ...]
    skipped: int = 0
    repeated: int = 0
    has_next: bool = False
