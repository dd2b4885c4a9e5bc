"""The state every endpoint of one emulator shares.

One :class:`State` holds the library, the account's secrets, the URL signer,
the injected faults and the options the endpoints read.  The three listening
roles answer from this single object, so a token minted on one port works on
another and a URL issued by the listing is served by the files role.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable

import attrs

from veo3dl.testing._auth import AuthState
from veo3dl.testing._faults import FaultKind, FaultRegistry
from veo3dl.testing._library import EmulatedItem, Library
from veo3dl.testing._signing import UrlSigner

__all__ = ["FILES_PREFIX", "State"]

FILES_PREFIX = "/ai-sandbox-videofx/"
# How far in the past an "expired" file URL's Expires lies.
_EXPIRED_AGO = 3600


@attrs.define(repr=False)
class State:
    """Everything the endpoints of one emulator read and change."""

    library: Library
    auth: AuthState
    faults: FaultRegistry
    clock: Callable[[], float]
    page_cap: int
    meta_cursor_quirk: bool
    fife_lifetime: float
    signer: UrlSigner = attrs.field(factory=UrlSigner)
    cursor_secret: bytes = attrs.field(factory=lambda: secrets.token_bytes(16))
    files_url: str = ""

    def __repr__(self) -> str:
        return f"State(files_url={self.files_url!r})"

    def file_path(self, item: EmulatedItem, *, still: bool = False) -> str:
        """The path of *item*'s file (*still*: a video's still image) on the files role."""
        kind = "video" if item.media_type == "VIDEO" and not still else "image"
        return f"{FILES_PREFIX}{kind}/{item.media_key}"

    def fife_url(self, item: EmulatedItem, endpoint: str, *, still: bool = False) -> str:
        """A freshly signed URL of *item*'s file, issued by *endpoint*.

        An ``expired_fife`` fault for this endpoint and item makes the file
        URL (not a still's) stale from the start.
        """
        now = int(self.clock())
        if not still and self.faults.take(FaultKind.EXPIRED_FIFE, endpoint, item.name):
            expires = now - _EXPIRED_AGO
        else:
            expires = now + int(self.fife_lifetime)
        return self.signer.url(self.files_url, self.file_path(item, still=still), expires)
