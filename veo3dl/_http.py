"""HTTP plumbing shared by the client: sessions, retry timing, per-host pauses.

``requests`` and urllib3 carry the bytes; this module decides *when* to try
again.  urllib3's own ``Retry`` is kept to connection setup (nothing was
sent, so a retry is always safe); everything that needs the answer — 5xx,
429 with ``Retry-After``, a body cut short — is retried by the client's loop
with :class:`RetryPolicy`, because a pause after a 429 must be shared with
every other request to that host (:class:`HostGate`), across threads and,
through the coordinator, across worker processes.
"""

from __future__ import annotations

import http.cookiejar
import os
import random
import threading
import time
import urllib.request
from typing import Protocol
from urllib.parse import urlsplit

import attrs
import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from veo3dl._version import __version__

__all__ = [
    "MAX_REDIRECTS",
    "HostGate",
    "LocalHostGate",
    "ProxyTable",
    "RetryPolicy",
    "host_of",
    "make_session",
]

USER_AGENT = f"veo3dl/{__version__}"
# Flow's hosts answer directly; a chain longer than this is a loop or a trap.
MAX_REDIRECTS = 5


def make_session(pool_size: int = 10) -> requests.Session:
    """A session with keep-alive pools of *pool_size* and connect-only retries."""
    session = requests.Session()
    retry = Retry(
        total=None,
        connect=3,
        read=0,
        redirect=MAX_REDIRECTS,
        status=0,
        other=0,
        backoff_factor=0.2,
        raise_on_status=False,
        respect_retry_after_header=False,
    )
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=max(pool_size, 1), max_retries=retry)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["User-Agent"] = USER_AGENT
    session.max_redirects = MAX_REDIRECTS
    # requests re-reads proxy settings from the environment on every request
    # (half a millisecond each); ProxyTable reads them once per host instead.
    session.trust_env = False
    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    if bundle:
        session.verify = bundle
    # Cookies are sent explicitly per request; never let a server plant one
    # that would then travel to another host.
    session.cookies.set_policy(_RejectAllCookies())
    return session


class _RejectAllCookies(http.cookiejar.DefaultCookiePolicy):
    def set_ok(self, cookie: http.cookiejar.Cookie, request: urllib.request.Request) -> bool:
        return False


class ProxyTable:
    """The environment's proxy settings (``HTTPS_PROXY``, ``NO_PROXY``...) per host, read once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_host: dict[str, dict[str, str]] = {}

    def for_url(self, url: str) -> dict[str, str]:
        """The ``proxies`` argument for a request to *url*."""
        host = host_of(url)
        with self._lock:
            found = self._by_host.get(host)
            if found is None:
                found = dict(requests.utils.get_environ_proxies(url))
                self._by_host[host] = found
            return found


def host_of(url: str) -> str:
    """The ``scheme://host:port`` a pause applies to."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


@attrs.frozen
class RetryPolicy:
    """How many times, and how long apart, a request is tried.

    ``attempts`` counts every try, the first included.  Delays grow as
    ``backoff * 2**n`` up to ``backoff_max``, each drawn at random between half
    and all of that bound, so that many workers retrying together spread out.
    A ``Retry-After`` is honoured up to ``retry_after_max`` seconds.
    """

    attempts: int = attrs.field(default=4, validator=attrs.validators.ge(1))
    backoff: float = attrs.field(default=0.5, validator=attrs.validators.ge(0))
    backoff_max: float = attrs.field(default=30.0, validator=attrs.validators.ge(0))
    retry_after_max: float = attrs.field(default=300.0, validator=attrs.validators.ge(0))

    def delay(self, failures: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after the *failures*-th failure in a row (1-based)."""
        bound = min(self.backoff_max, self.backoff * 2.0 ** max(failures - 1, 0))
        draw: float = (rng or random).random()
        return bound * (0.5 + draw / 2)

    def retry_after(self, seconds: float | None, failures: int) -> float:
        """The wait after a 429: what the server asked (capped), else the backoff."""
        if seconds is None:
            return self.delay(failures)
        return min(seconds, self.retry_after_max)


class HostGate(Protocol):
    """Where requests to a host wait out a pause that any requester announced."""

    def wait(self, host: str) -> None:
        """Block until requests to *host* may go (returns at once when not paused)."""

    def pause(self, host: str, seconds: float) -> None:
        """Hold every request to *host* for *seconds* from now."""


class LocalHostGate:
    """A :class:`HostGate` shared by the threads of one process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._until: dict[str, float] = {}

    def pause(self, host: str, seconds: float) -> None:
        """Hold requests to *host* for *seconds* (never shortening a longer pause)."""
        if seconds <= 0:
            return
        until = time.monotonic() + seconds
        with self._lock:
            if until > self._until.get(host, 0.0):
                self._until[host] = until

    def paused_for(self, host: str) -> float:
        """Seconds left in *host*'s pause (0 when none)."""
        with self._lock:
            return max(0.0, self._until.get(host, 0.0) - time.monotonic())

    def wait(self, host: str) -> None:
        """Sleep out *host*'s pause, re-reading it in case it was extended meanwhile."""
        while (left := self.paused_for(host)) > 0:
            time.sleep(left)
