"""FlowEmulator: the emulated Google Flow service, ready to run in a test."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from types import TracebackType

from veo3dl._credentials import Credentials
from veo3dl.exceptions import ConfigError
from veo3dl.testing._auth import AuthState
from veo3dl.testing._faults import ENDPOINTS, Fault, FaultHandle, FaultRegistry
from veo3dl.testing._library import EmulatedItem, Library, LibraryOptions
from veo3dl.testing._media import MediaBlob
from veo3dl.testing._server import HttpServer
from veo3dl.testing._service import Service
from veo3dl.testing._state import RequestHold, State

__all__ = ["DEFAULT_BASE_TIME", "FlowEmulator"]

DEFAULT_BASE_TIME = datetime(2025, 10, 29, 14, 0, tzinfo=timezone.utc)
_ROLES = ("labs", "api", "files")


def _check_range(label: str, bounds: tuple[int, int]) -> tuple[int, int]:
    low, high = bounds
    if not 0 < low <= high:
        raise ConfigError(f"{label} must be (low, high) with 0 < low <= high")
    return low, high


class FlowEmulator:
    """The Google Flow service on loopback, with a deterministic library and faults.

    Three HTTP/1.1 servers share one state: :attr:`labs_url` (session and
    listing), :attr:`api_url` (media by name) and :attr:`files_url` (signed
    file URLs).  Use it as a context manager, or call :meth:`start` and
    :meth:`stop`.

    The library holds *items* items, *videos* of them videos, created over
    *days* days up to *base_time*, page by page at most *page_cap* per
    listing page; files are between *image_bytes* / *video_bytes* bytes.
    Everything follows from *seed*.  *latency* delays every answer;
    *token_calls* makes each bearer token die after that many media calls;
    *token_lifetime* and *fife_lifetime* (seconds) bound tokens and signed
    URLs by *clock* (Unix seconds, ``time.time`` by default, replaceable to
    move time in tests).  *meta_cursor_quirk* reproduces the service
    answering the first page when ``meta`` is sent with a cursor.  *port*
    (default 0: ephemeral) puts labs, api and files on *port*, *port* + 1 and
    *port* + 2.
    """

    def __init__(
        self,
        *,
        items: int = 42,
        videos: int = 6,
        seed: int = 0,
        page_cap: int = 18,
        latency: float = 0.0,
        image_bytes: tuple[int, int] = (40_000, 160_000),
        video_bytes: tuple[int, int] = (600_000, 2_000_000),
        token_calls: int | None = None,
        token_lifetime: float = 3600.0,
        fife_lifetime: float = 6 * 3600.0,
        base_time: datetime = DEFAULT_BASE_TIME,
        days: int = 10,
        meta_cursor_quirk: bool = True,
        clock: Callable[[], float] = time.time,
        port: int = 0,
    ) -> None:
        if items < 0:
            raise ConfigError("items must not be negative")
        if page_cap < 1:
            raise ConfigError("page_cap must be at least 1")
        if latency < 0:
            raise ConfigError("latency must not be negative")
        if token_calls is not None and token_calls < 1:
            raise ConfigError("token_calls must be at least 1 (or None)")
        if base_time.tzinfo is None:
            raise ConfigError("base_time must be timezone-aware")
        if not 0 <= port <= 65533:
            raise ConfigError(
                "port must be 0 (ephemeral) or a free port with the next two free too"
            )
        self._port = port
        self.seed = seed
        options = LibraryOptions(
            items=items,
            videos=videos,
            seed=seed,
            base_time=base_time,
            days=days,
            image_bytes=_check_range("image_bytes", image_bytes),
            video_bytes=_check_range("video_bytes", video_bytes),
        )
        self._state = State(
            library=Library(options),
            auth=AuthState(clock=clock, lifetime=token_lifetime, token_calls=token_calls),
            faults=FaultRegistry(seed),
            clock=clock,
            page_cap=page_cap,
            meta_cursor_quirk=meta_cursor_quirk,
            fife_lifetime=fife_lifetime,
        )
        self._service = Service(self._state, latency)
        self._server: HttpServer | None = None
        self._urls: dict[str, str] = {}
        self._stopped = False

    def __repr__(self) -> str:
        where = self._urls.get("labs", "not running")
        return f"FlowEmulator(seed={self.seed}, items={len(self.items)}, labs={where})"

    # --- lifecycle ---------------------------------------------------------

    def start(self) -> FlowEmulator:
        """Start listening (three ephemeral loopback ports).  Returns ``self``."""
        if self._server is not None or self._stopped:
            raise RuntimeError("a FlowEmulator starts once")
        server = HttpServer(_ROLES, self._service, first_port=self._port)
        server.start()
        self._server = server
        self._urls = {role: f"http://127.0.0.1:{port}" for role, port in server.ports.items()}
        self._state.files_url = self._urls["files"]
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving and close every connection; waits at most about *timeout* s."""
        if self._server is not None and not self._stopped:
            self._stopped = True
            self._state.holds.release_all()
            self._server.stop(timeout)

    @property
    def running(self) -> bool:
        """Whether the emulator is serving."""
        return self._server is not None and not self._stopped

    def __enter__(self) -> FlowEmulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _url(self, role: str) -> str:
        if not self._urls:
            raise RuntimeError("the emulator is not started")
        return self._urls[role]

    @property
    def labs_url(self) -> str:
        """Base URL of the labs role (session, listing): ``http://127.0.0.1:PORT``."""
        return self._url("labs")

    @property
    def api_url(self) -> str:
        """Base URL of the api role (one media item by name)."""
        return self._url("api")

    @property
    def files_url(self) -> str:
        """Base URL of the files role (signed file URLs)."""
        return self._url("files")

    # --- account -----------------------------------------------------------

    @property
    def credentials(self) -> Credentials:
        """Valid credentials: the session cookie, a bearer token and the API key."""
        return self._state.auth.credentials()

    @property
    def stale_cookie(self) -> bool:
        """When true the session cookie is stale: no new tokens, the listing says 401."""
        return self._state.auth.stale_cookie

    @stale_cookie.setter
    def stale_cookie(self, value: bool) -> None:
        self._state.auth.stale_cookie = value

    def expire_tokens(self) -> None:
        """Invalidate every bearer token issued so far (new ones still work)."""
        self._state.auth.expire_all()

    def mint_token(self) -> str:
        """A fresh valid bearer token, as the session endpoint would give."""
        return self._state.auth.mint()[0]

    # --- library -----------------------------------------------------------

    @property
    def items(self) -> list[EmulatedItem]:
        """Every item of the library, newest first."""
        return self._state.library.snapshot()

    def item(self, name: str) -> EmulatedItem:
        """The item called *name* (canonical form); ``KeyError`` if there is none."""
        item = self._state.library.get(name)
        if item is None:
            raise KeyError(name)
        return item

    def blob(self, name: str) -> MediaBlob:
        """The file of item *name*, readable by range without building it whole."""
        return self._state.library.blob(self.item(name))

    def content(self, name: str) -> bytes:
        """The exact bytes of item *name*'s file."""
        return self.blob(name).content()

    def fife_url(self, name: str) -> str:
        """A freshly signed file URL for item *name* (needs a running emulator)."""
        self._url("files")
        return self._state.fife_url(self.item(name), "emulator")

    def add_items(self, count: int, *, videos: int = 0) -> list[EmulatedItem]:
        """Add *count* items newer than all others (the first *videos* are videos)."""
        return self._state.library.add(count, videos)

    def remove_items(self, names: Iterable[str]) -> list[EmulatedItem]:
        """Remove the named items from the library; returns those that existed."""
        names = [names] if isinstance(names, str) else names
        return self._state.library.remove(names)

    # --- faults ------------------------------------------------------------

    def inject(
        self,
        fault: Fault,
        *,
        endpoint: str | None = None,
        name: str | None = None,
        times: int | None = 1,
        rate: float | None = None,
    ) -> FaultHandle:
        """Make *fault* happen.

        *endpoint* is ``"session"``, ``"listing"``, ``"media"`` or ``"fife"``
        (``None``: every endpoint the fault applies to); *name* limits it to
        one item.  It fires on the next *times* matching requests (``None``:
        on all), or, with *rate*, on that fraction of them (drawn from the
        emulator's seed).  Returns a handle whose ``remove()`` withdraws it.
        """
        return self._state.faults.add(fault, endpoint=endpoint, name=name, times=times, rate=rate)

    @property
    def faults(self) -> list[FaultHandle]:
        """The faults injected and not removed (spent ones included)."""
        with self._state.faults.lock:
            return list(self._state.faults.handles)

    def clear_faults(self) -> None:
        """Withdraw every injected fault."""
        self._state.faults.clear()

    def hold(
        self,
        endpoint: str | None,
        *,
        nth: int = 1,
        times: int | None = 1,
        name: str | None = None,
        timeout: float | None = None,
    ) -> RequestHold:
        """Hold requests before they are answered, until the returned hold is released.

        Requests to *endpoint* (``None``: any), for item *name* if given, are
        counted from now; the *nth* of them and the *times* - 1 after it
        (*times* ``None``: every one from the *nth* on) are counted by
        :meth:`requests`, then wait unanswered until ``release()`` is called,
        the emulator stops, or *timeout* seconds pass.  ``wait(timeout)``
        blocks until the *nth* arrives, so a test can act at an exact point
        of a client's run::

            page = flow.hold("listing", nth=3)
            client = start_client()
            assert page.wait(30)        # the client now waits for page 3
            client.kill()
            page.release()
        """
        if endpoint is not None and endpoint not in (*ENDPOINTS, "other"):
            raise ConfigError(f"unknown endpoint {endpoint!r}")
        if nth < 1:
            raise ConfigError("nth must be at least 1")
        if times is not None and times < 1:
            raise ConfigError("times must be at least 1 (or None for every one)")
        if timeout is not None and timeout < 0:
            raise ConfigError("timeout must not be negative")
        return self._state.holds.add(RequestHold(endpoint, name, nth, times, timeout))

    # --- observation -------------------------------------------------------

    def requests(self, endpoint: str | None = None, name: str | None = None) -> int:
        """How many requests reached *endpoint* (any if ``None``), for item *name*.

        Endpoints: ``session``, ``listing``, ``media``, ``fife`` and ``other``
        (unknown paths).  Faulted and refused requests count too.
        """
        if endpoint is not None and endpoint not in (*ENDPOINTS, "other"):
            raise ConfigError(f"unknown endpoint {endpoint!r}")
        return self._service.requests(endpoint, name)

    def reset_counters(self) -> None:
        """Set every request counter back to zero."""
        self._service.reset_counters()

    def connections(self) -> int:
        """How many TCP connections the emulator has accepted, on all roles."""
        return 0 if self._server is None else self._server.accepted

    @property
    def deviations(self) -> list[str]:
        """What clients left out that the web app sends (a header, a query value).

        The emulator answers such requests anyway (how the real service
        treats them is not known); a faithful client leaves this empty.
        """
        return list(self._state.deviations)

    @property
    def errors(self) -> list[str]:
        """Tracebacks of emulator bugs (each answered 500); empty in a healthy run."""
        return [] if self._server is None else self._server.errors
