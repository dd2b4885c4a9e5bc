"""Fault injection: what can go wrong, where, and how often.

A :class:`Fault` says what goes wrong (a status, a reset connection, a slow
body, an expired URL, ...); :meth:`FlowEmulator.inject` says where (an
endpoint, optionally one item) and how often (a number of times, or a
probability drawn from a generator seeded by the emulator's seed, so a run is
repeatable).  The registry here decides, request by request, which fault
fires.
"""

from __future__ import annotations

import enum
import random
import threading
from datetime import datetime
from email.utils import format_datetime

import attrs

from veo3dl.exceptions import ConfigError

__all__ = ["ENDPOINTS", "Fault", "FaultHandle", "FaultKind", "FaultRegistry"]

ENDPOINTS = ("session", "listing", "media", "fife")


class FaultKind(str, enum.Enum):
    """The kinds of fault the emulator can inject."""

    LATENCY = "latency"
    STATUS = "status"
    RATE_LIMITED = "rate_limited"
    TRUNCATE = "truncate"
    RESET = "reset"
    DRIP = "drip"
    HTML = "html"
    JSON_200 = "json_200"
    SHORT_LENGTH = "short_length"
    EXPIRED_FIFE = "expired_fife"
    REPEAT_ITEMS = "repeat_items"
    LOOP_TOKEN = "loop_token"  # noqa: S105 (a fault kind, not a secret)


_ANY = frozenset(ENDPOINTS)
_APPLIES: dict[FaultKind, frozenset[str]] = {
    FaultKind.JSON_200: frozenset({"fife"}),
    FaultKind.SHORT_LENGTH: frozenset({"fife"}),
    FaultKind.EXPIRED_FIFE: frozenset({"listing", "media"}),
    FaultKind.REPEAT_ITEMS: frozenset({"listing"}),
    FaultKind.LOOP_TOKEN: frozenset({"listing"}),
}
# Faults that decide how a request is answered (the rest act elsewhere:
# when a URL is issued, or inside the listing).
REQUEST_KINDS = frozenset(
    {
        FaultKind.STATUS,
        FaultKind.RATE_LIMITED,
        FaultKind.TRUNCATE,
        FaultKind.RESET,
        FaultKind.DRIP,
        FaultKind.HTML,
        FaultKind.JSON_200,
        FaultKind.SHORT_LENGTH,
    }
)


def _retry_after(value: float | str | datetime | None) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, datetime):
        return format_datetime(value, usegmt=True)
    return str(max(0, round(value)))


@attrs.frozen
class Fault:
    """Something that goes wrong.  Build one with the class methods::

    Fault.status(503)
    Fault.rate_limited(retry_after=2)
    Fault.drip(delay=1.0, chunk=1024)
    """

    kind: FaultKind
    seconds: float = 0.0
    code: int = 0
    google_status: str | None = None
    reason: str | None = None
    message: str | None = None
    retry_after: str | None = None
    chunk: int = 0
    count: int = 0

    @classmethod
    def latency(cls, seconds: float) -> Fault:
        """Answer *seconds* later than usual (adds to the global ``latency``)."""
        if seconds < 0:
            raise ConfigError("latency must not be negative")
        return cls(FaultKind.LATENCY, seconds=seconds)

    @classmethod
    def status(
        cls,
        code: int,
        *,
        google_status: str | None = None,
        reason: str | None = None,
        message: str | None = None,
    ) -> Fault:
        """Answer with HTTP *code* (4xx/5xx): Google's JSON error, XML on the files role.

        *google_status* (e.g. ``UNAVAILABLE``) defaults from the code; on the
        files role it is the XML ``<Code>``.
        """
        if not 400 <= code <= 599:
            raise ConfigError("status faults take a 4xx or 5xx code")
        return cls(
            FaultKind.STATUS, code=code, google_status=google_status, reason=reason, message=message
        )

    @classmethod
    def rate_limited(
        cls,
        retry_after: float | str | datetime | None = 2,
        *,
        reason: str = "PUBLIC_ERROR_USER_REQUESTS_THROTTLED",
    ) -> Fault:
        """Answer 429 ``RESOURCE_EXHAUSTED`` with a ``Retry-After`` header.

        *retry_after* is seconds, an HTTP date (a string or an aware
        datetime), or ``None`` for no header.
        """
        return cls(
            FaultKind.RATE_LIMITED,
            code=429,
            google_status="RESOURCE_EXHAUSTED",
            reason=reason,
            retry_after=_retry_after(retry_after),
        )

    @classmethod
    def truncate(cls) -> Fault:
        """Declare the full ``Content-Length``, send about half, close the connection."""
        return cls(FaultKind.TRUNCATE)

    @classmethod
    def reset(cls) -> Fault:
        """Reset the connection (TCP RST) without answering."""
        return cls(FaultKind.RESET)

    @classmethod
    def drip(cls, delay: float = 1.0, chunk: int = 1024) -> Fault:
        """Send the headers and *chunk* bytes at a time, pausing *delay* seconds between."""
        if delay < 0 or chunk < 1:
            raise ConfigError("drip needs delay >= 0 and chunk >= 1")
        return cls(FaultKind.DRIP, seconds=delay, chunk=chunk)

    @classmethod
    def html(cls) -> Fault:
        """Answer 200 with an HTML error page, as a misbehaving CDN does."""
        return cls(FaultKind.HTML)

    @classmethod
    def json_200(cls) -> Fault:
        """Files role only: answer 200 with a JSON body instead of the file."""
        return cls(FaultKind.JSON_200)

    @classmethod
    def short_length(cls) -> Fault:
        """Files role only: a smaller ``Content-Length`` and only that many bytes."""
        return cls(FaultKind.SHORT_LENGTH)

    @classmethod
    def expired_fife(cls) -> Fault:
        """File URLs issued (by the listing or the media answer) are already expired."""
        return cls(FaultKind.EXPIRED_FIFE)

    @classmethod
    def repeat_items(cls, count: int = 3) -> Fault:
        """A listing page after the first starts with *count* items of the page before."""
        if count < 1:
            raise ConfigError("count must be at least 1")
        return cls(FaultKind.REPEAT_ITEMS, count=count)

    @classmethod
    def loop_token(cls) -> Fault:
        """A listing page after the first hands back the token it was called with."""
        return cls(FaultKind.LOOP_TOKEN)


@attrs.define(eq=False)
class FaultHandle:
    """An injected fault.  ``remove()`` withdraws it; ``fired`` counts its firings."""

    fault: Fault
    endpoint: str | None
    name: str | None
    _remaining: int | None = attrs.field(alias="remaining")
    _rate: float | None = attrs.field(alias="rate")
    _rng: random.Random = attrs.field(alias="rng", repr=False)
    _registry: FaultRegistry = attrs.field(alias="registry", repr=False)
    _fired: int = attrs.field(default=0, alias="fired")

    @property
    def fired(self) -> int:
        """How many times the fault has fired so far."""
        with self._registry.lock:
            return self._fired

    @property
    def active(self) -> bool:
        """Whether the fault can still fire."""
        with self._registry.lock:
            return self in self._registry.handles and self._remaining != 0

    def remove(self) -> None:
        """Withdraw the fault (a no-op when already removed)."""
        self._registry.remove(self)

    def _matches(self, kind: FaultKind, endpoint: str, name: str | None) -> bool:
        return (
            self.fault.kind is kind
            and self._remaining != 0
            and self.endpoint in (None, endpoint)
            and endpoint in _APPLIES.get(kind, _ANY)
            and self.name in (None, name)
        )

    def _try_fire(self) -> bool:
        if self._rate is not None and self._rng.random() >= self._rate:
            return False
        if self._remaining is not None:
            self._remaining -= 1
        self._fired += 1
        return True


class FaultRegistry:
    """The injected faults of one emulator, consulted by its request handlers."""

    def __init__(self, seed: int) -> None:
        self.lock = threading.Lock()
        self.handles: list[FaultHandle] = []
        self._seed = seed
        self._added = 0

    def add(
        self,
        fault: Fault,
        *,
        endpoint: str | None,
        name: str | None,
        times: int | None,
        rate: float | None,
    ) -> FaultHandle:
        """Register *fault*; see :meth:`FlowEmulator.inject`."""
        applies = _APPLIES.get(fault.kind, _ANY)
        if endpoint is not None and endpoint not in ENDPOINTS:
            raise ConfigError(f"endpoint must be one of {ENDPOINTS} or None, not {endpoint!r}")
        if endpoint is not None and endpoint not in applies:
            raise ConfigError(f"a {fault.kind.value} fault applies to {sorted(applies)} only")
        if name is not None and not (applies & {"media", "fife"}):
            raise ConfigError(f"a {fault.kind.value} fault cannot target one item")
        if (
            name is not None
            and endpoint in ("session", "listing")
            and fault.kind is not FaultKind.EXPIRED_FIFE
        ):
            raise ConfigError(f"{endpoint} requests do not name an item")
        if rate is not None and not 0.0 <= rate <= 1.0:
            raise ConfigError("rate must be between 0 and 1")
        if rate is None and times is not None and times < 1:
            raise ConfigError("times must be at least 1 (or None for always)")
        with self.lock:
            self._added += 1
            handle = FaultHandle(
                fault,
                endpoint,
                name,
                remaining=None if rate is not None else times,
                rate=rate,
                rng=random.Random(f"{self._seed}:fault:{self._added}"),
                registry=self,
            )
            self.handles.append(handle)
        return handle

    def remove(self, handle: FaultHandle) -> None:
        """Withdraw *handle*."""
        with self.lock:
            if handle in self.handles:
                self.handles.remove(handle)

    def clear(self) -> None:
        """Withdraw every fault."""
        with self.lock:
            self.handles.clear()

    def for_request(self, endpoint: str, name: str | None) -> tuple[float, Fault | None]:
        """The extra latency and the answer-changing fault (if any) for one request."""
        delay, chosen = 0.0, None
        with self.lock:
            for handle in self.handles:
                if handle._matches(FaultKind.LATENCY, endpoint, name) and handle._try_fire():
                    delay += handle.fault.seconds
            for handle in self.handles:
                kind = handle.fault.kind
                if (
                    kind in REQUEST_KINDS
                    and handle._matches(kind, endpoint, name)
                    and handle._try_fire()
                ):
                    chosen = handle.fault
                    break
        return delay, chosen

    def take(self, kind: FaultKind, endpoint: str, name: str | None = None) -> Fault | None:
        """Fire the first matching fault of *kind* (a non-request fault), if any."""
        with self.lock:
            for handle in self.handles:
                if handle._matches(kind, endpoint, name) and handle._try_fire():
                    return handle.fault
        return None
