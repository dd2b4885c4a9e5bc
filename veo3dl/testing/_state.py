"""The state every endpoint of one emulator shares.

One :class:`State` holds the library, the account's secrets, the URL signer,
the injected faults, the request holds and the options the endpoints read.
The three listening roles answer from this single object, so a token minted
on one port works on another and a URL issued by the listing is served by the
files role.

A :class:`RequestHold` (made by :meth:`FlowEmulator.hold`) stops chosen
requests before they are answered, until the test releases them: the way to
act at an exact point of a client's run ("when the third listing page is
asked for, kill the client") without sleeping and hoping.
"""

from __future__ import annotations

import secrets
import threading
import weakref
from collections.abc import Callable

import attrs

from veo3dl.testing._auth import AuthState
from veo3dl.testing._faults import FaultKind, FaultRegistry
from veo3dl.testing._library import EmulatedItem, Library
from veo3dl.testing._signing import UrlSigner

__all__ = ["FILES_PREFIX", "HoldRegistry", "RequestHold", "State"]

FILES_PREFIX = "/ai-sandbox-videofx/"
# How far in the past an "expired" file URL's Expires lies.
_EXPIRED_AGO = 3600


class RequestHold:
    """Requests held before they are answered, until :meth:`release`.

    Made by :meth:`FlowEmulator.hold`: matching requests are counted from the
    moment the hold is made; the *nth* and, with *times*, the ones after it
    (``None``: every one from the *nth* on) wait in the emulator, counted and
    not yet answered, until :meth:`release` is called, the emulator stops, or
    *timeout* seconds pass (``None``: no limit).  Then they are answered as
    usual (faults included).  :meth:`wait` blocks until the first one arrives.
    """

    def __init__(
        self,
        endpoint: str | None,
        name: str | None,
        nth: int,
        times: int | None,
        timeout: float | None,
    ) -> None:
        self.endpoint = endpoint
        self.name = name
        self.nth = nth
        self.times = times
        self.timeout = timeout
        self._seen = 0
        self._held = 0
        self._arrived = threading.Event()
        self._released = threading.Event()

    def __repr__(self) -> str:
        return (
            f"RequestHold(endpoint={self.endpoint!r}, nth={self.nth}, times={self.times}, "
            f"held={self.held}, released={self.released})"
        )

    @property
    def arrived(self) -> bool:
        """Whether the *nth* matching request has arrived."""
        return self._arrived.is_set()

    @property
    def released(self) -> bool:
        """Whether :meth:`release` was called (or the emulator stopped)."""
        return self._released.is_set()

    @property
    def held(self) -> int:
        """How many requests this hold has caught so far (released ones included)."""
        return self._held

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the *nth* matching request arrives; ``False`` if *timeout* passed first."""
        return self._arrived.wait(timeout)

    def release(self) -> None:
        """Let every held request (and every later one) be answered.  Idempotent."""
        self._released.set()

    def _catch(self, endpoint: str, name: str | None) -> bool:
        """Count a request (under the registry's lock); ``True`` if it is to be held."""
        if self._released.is_set() or self.endpoint not in (None, endpoint):
            return False
        if self.name not in (None, name):
            return False
        self._seen += 1
        last = None if self.times is None else self.nth + self.times - 1
        if self._seen < self.nth or (last is not None and self._seen > last):
            return False
        self._held += 1
        return True

    def _hold(self) -> None:
        """Called on the request's thread: signal the arrival, then wait for the release."""
        self._arrived.set()
        self._released.wait(self.timeout)

    @property
    def _spent(self) -> bool:
        return self._released.is_set() or (
            self.times is not None and self._seen >= self.nth + self.times - 1
        )


class HoldRegistry:
    """The request holds of one emulator, consulted as each request arrives."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._holds: list[RequestHold] = []  # still counting requests
        self._made: weakref.WeakSet[RequestHold] = weakref.WeakSet()  # for release_all

    def add(self, hold: RequestHold) -> RequestHold:
        """Register *hold*."""
        with self._lock:
            self._holds.append(hold)
            self._made.add(hold)
        return hold

    def arrive(self, endpoint: str, name: str | None) -> None:
        """Count a request against every hold; block while one of them holds it."""
        with self._lock:
            catching = [hold for hold in self._holds if hold._catch(endpoint, name)]
            self._holds = [hold for hold in self._holds if not hold._spent]
        for hold in catching:
            hold._hold()

    def release_all(self) -> None:
        """Release every hold, spent ones included (the emulator is stopping)."""
        with self._lock:
            holds = list(self._made)
            self._holds.clear()
        for hold in holds:
            hold.release()


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
    holds: HoldRegistry = attrs.field(factory=HoldRegistry)
    deviations: list[str] = attrs.field(factory=list)

    def deviation(self, endpoint: str, what: str) -> None:
        """Note that a client left out something the web app sends (answered anyway)."""
        note = f"{endpoint}: {what}"
        if note not in self.deviations:  # list.append is atomic; a rare duplicate is harmless
            self.deviations.append(note)

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
