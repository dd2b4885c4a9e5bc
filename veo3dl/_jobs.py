"""A download job and its result: what crosses the pool's pipes.

Both are frozen attrs classes that pickle.  The parent decides everything
about a job (where the file goes, how to reach Flow); the worker only fetches,
checks and writes.  Neither repr shows a secret: the access spec hides its
credentials, and signed URLs are shown without their signature.
"""

from __future__ import annotations

from typing import Protocol

import attrs

from veo3dl._redaction import redact_url
from veo3dl._sinks import Sink

__all__ = ["DownloadJob", "DownloadResult", "MediaFetcher", "TransportSpec"]


class MediaFetcher(Protocol):
    """What a worker needs from a transport: one item's file, or a signed URL, into a sink."""

    def fetch_media_into(self, name: str, sink: Sink) -> object:
        """Fetch item *name* from the service into *sink* (reset first)."""

    def download_signed_url(self, url: str, sink: Sink, *, item: str | None = None) -> int:
        """Stream a signed file URL into *sink*."""

    def close(self) -> None:
        """Release connections."""


class TransportSpec(Protocol):
    """A picklable recipe for a :class:`MediaFetcher`, built once per worker process."""

    def build(self) -> MediaFetcher:
        """Make the fetcher (in the worker; never carried across a fork)."""


def _url_repr(url: str | None) -> str:
    return "None" if url is None else repr(redact_url(url))


@attrs.frozen
class DownloadJob:
    """Download one item to ``storage_root / destination`` + ``.{ext}``.

    ``destination`` is the path relative to the storage root without the
    extension, which only the downloaded bytes can tell.  ``media_type`` is
    Flow's ``"IMAGE"`` or ``"VIDEO"``: bytes of the other kind are refused
    (``None``, when not known, accepts either).  ``replaceable`` lists the
    files at the destination (relative to the storage root, ``/``-separated)
    known to be this item's own - a damaged earlier copy, a leftover - which
    the download may replace; any other file there is replaced only if it is
    not whole media or holds the same bytes.  ``access`` says
    how to reach the service's media endpoint (``None``: the signed URL
    only); ``fife_url`` is the signed file URL to fall back on.
    """

    name: str
    destination: str
    storage_root: str
    media_type: str | None = None
    media_key: str | None = None
    fife_url: str | None = attrs.field(default=None, repr=_url_repr)
    access: TransportSpec | None = None
    replaceable: tuple[str, ...] = ()


@attrs.frozen
class DownloadResult:
    """What happened to one :class:`DownloadJob`.

    On success ``local_path`` (relative to the storage root, ``/``-separated),
    ``size``, ``sha256`` and ``mime_type`` describe the file and ``source``
    says where it came from (``"api"`` or ``"fife"``).  On failure
    ``error_kind`` names the exception class and ``error_message`` says what
    to do; nothing was kept on disk.  ``attempts`` counts the sources tried.
    ``notes`` says what the worker met on the way (a source that failed
    before another worked): the parent logs them, since a worker's own log
    lines go nowhere.
    """

    name: str
    ok: bool
    local_path: str | None = None
    size: int | None = None
    sha256: str | None = None
    mime_type: str | None = None
    source: str | None = None
    attempts: int = 0
    error_kind: str | None = None
    error_message: str | None = None
    elapsed: float = 0.0
    prompt: str | None = None
    seed: int | None = None
    model: str | None = None
    notes: tuple[str, ...] = ()
