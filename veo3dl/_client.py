"""FlowClient: the HTTP conversation with Google Flow.

It sends what :mod:`veo3dl._protocol` builds, retries what is worth
retrying, and maps every failure onto :mod:`veo3dl.exceptions`:

* connect/read errors, 408 and every 5xx, and bodies cut short: retried
  with exponential backoff and jitter (:class:`~veo3dl._http.RetryPolicy`);
* 429: the host is paused for ``Retry-After`` (capped) in every thread that
  shares the client's :class:`~veo3dl._http.HostGate`, then retried;
* 401 from the api host: the bearer token is renewed once
  (:mod:`veo3dl._tokens`), then the request is retried;
* a stale cookie: :class:`~veo3dl.exceptions.LoginRequired`, never retried;
* a request that cannot be made (too many redirects, a URL or header that
  requests refuses): :class:`~veo3dl.exceptions.TransportError` at once,
  saying what it was without quoting the request (:mod:`veo3dl._failures`).

The client is thread-safe.  It holds a ``requests.Session``, so it must be
created in the process that uses it (never carried across a fork).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import TypeVar

import attrs
import requests

from veo3dl import _protocol as proto
from veo3dl._credentials import Credentials
from veo3dl._failures import (
    TRANSIENT_ERRORS,
    answer_error,
    describe_request_failure,
    read_json,
    retryable,
)
from veo3dl._http import HostGate, LocalHostGate, ProxyTable, RetryPolicy, host_of, make_session
from veo3dl._listing import Listing
from veo3dl._logging import get_logger, protect_stdlib_loggers
from veo3dl._models import MediaItem
from veo3dl._payload_stream import PayloadExtractor
from veo3dl._redaction import redact_url
from veo3dl._signed_urls import SignedUrlDownloader
from veo3dl._sinks import BytesSink, Sink, read_at_most
from veo3dl._sniff import sniff
from veo3dl._tokens import SessionTokenSource, TokenSource
from veo3dl._urls import DEFAULT_API_URL, DEFAULT_LABS_URL, check_base_url
from veo3dl.exceptions import (
    ApiError,
    AuthError,
    ConfigError,
    LoginRequired,
    PaginationError,
    ProtocolError,
    RateLimited,
    TokenExpired,
    TransportError,
)

__all__ = ["FetchedMedia", "FlowClient", "MediaInfo"]

T = TypeVar("T")
_log = get_logger(__name__)
_CHUNK = 256 * 1024


@attrs.frozen
class MediaInfo:
    """What one media answer said about its file, the file itself gone to a sink.

    ``size`` is the number of decoded bytes written; ``mime_type`` and
    ``extension`` come from sniffing those bytes (``None`` when they are not
    a known media type).
    """

    payload: proto.MediaPayload
    size: int
    mime_type: str | None
    extension: str | None

    @property
    def fife_url(self) -> str | None:
        """The fresh signed URL the answer carried."""
        return self.payload.fife_url


@attrs.frozen
class FetchedMedia:
    """One media item fetched into memory: its bytes and what the answer said."""

    data: bytes = attrs.field(repr=lambda d: f"<{len(d)} bytes>")
    info: MediaInfo

    @property
    def mime_type(self) -> str | None:
        """The sniffed MIME type, ``None`` when the bytes are not a known media type."""
        return self.info.mime_type

    @property
    def fife_url(self) -> str | None:
        """The fresh signed URL the answer carried."""
        return self.info.fife_url


class FlowClient:
    """A client for Google Flow's media library.

    *credentials* holds the browser cookie (for the listing and to mint
    bearer tokens), optionally a bearer token, and the API key.  The base URLs
    are ``scheme://host[:port]``; the client appends the real paths.
    *timeout* is ``(connect, read)`` seconds.  *retry* sets how often and how
    far apart failed requests are tried again.

    *token_source* and *gate* replace the in-process token cache and host
    pauses (worker processes pass ones shared through the coordinator).
    """

    def __init__(
        self,
        credentials: Credentials,
        *,
        labs_url: str = DEFAULT_LABS_URL,
        api_url: str = DEFAULT_API_URL,
        page_size: int = 18,
        timeout: float | tuple[float, float] = (10.0, 60.0),
        retry: RetryPolicy | None = None,
        max_pages: int = 10_000,
        allowed_file_hosts: frozenset[str] | None = None,
        pool_size: int = 10,
        token_source: TokenSource | None = None,
        gate: HostGate | None = None,
    ) -> None:
        if not isinstance(credentials, Credentials):
            raise ConfigError("credentials must be a veo3dl.Credentials")
        if page_size < 1 or max_pages < 1:
            raise ConfigError("page_size and max_pages must be at least 1")
        self.labs_url = check_base_url(labs_url, "labs_url")
        self.api_url = check_base_url(api_url, "api_url")
        self.page_size = page_size
        self.max_pages = max_pages
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self._credentials = credentials
        self._session = make_session(pool_size)
        self._proxies = ProxyTable()
        self._gate: HostGate = gate or LocalHostGate()
        self._tokens: TokenSource = token_source or self.own_token_source()
        self._log = _log.with_secrets(credentials.secrets())
        self._signed = SignedUrlDownloader(
            self._session,
            self.retry,
            self._gate,
            timeout=timeout,
            allowed_hosts=allowed_file_hosts,
            proxies=self._proxies,
        )
        protect_stdlib_loggers()

    def __repr__(self) -> str:
        return f"FlowClient(labs_url={self.labs_url!r}, api_url={self.api_url!r})"

    @property
    def credentials(self) -> Credentials:
        """The credentials this client was made with."""
        return self._credentials

    @property
    def allowed_file_hosts(self) -> frozenset[str]:
        """Hosts signed file URLs may point at."""
        return self._signed.allowed_hosts

    @property
    def token_source(self) -> TokenSource:
        """Where this client gets its bearer tokens."""
        return self._tokens

    def own_token_source(self, *, clock: Callable[[], float] = time.time) -> SessionTokenSource:
        """A token source of this client's own: the given token, renewed from the cookie.

        *clock* tells when a minted token is due for renewal (tests pass a fake one).
        """
        return SessionTokenSource(
            initial=self._credentials.bearer_token,
            mint=self._mint_token if self._credentials.cookie else None,
            clock=clock,
        )

    def close(self) -> None:
        """Close the HTTP connections."""
        self._session.close()

    def __enter__(self) -> FlowClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ------------------------------------------------------------ requests

    def _call(
        self,
        url: str,
        headers: dict[str, str],
        handle: Callable[[requests.Response], T],
        *,
        item: str | None = None,
        role: str,
    ) -> T:
        """GET *url* and give a 2xx answer to *handle*, retrying what is retryable."""
        host = host_of(url)
        shown = redact_url(url)
        failures = 0
        last: Exception | None = None
        while failures < self.retry.attempts:
            self._gate.wait(host)
            final = False
            try:
                with self._session.get(
                    url,
                    headers=headers,
                    timeout=self.timeout,
                    stream=True,
                    proxies=self._proxies.for_url(url),
                ) as response:
                    status = response.status_code
                    if 200 <= status < 300:
                        return handle(response)
                    body = read_at_most(response, 65536)
                    error = answer_error(response, body, shown, item, role)
            except TRANSIENT_ERRORS as exc:
                error = TransportError(
                    f"{type(exc).__name__} from {host}",
                    url=shown,
                    item=item,
                    hint="check the network and run again",
                )
            except requests.RequestException as exc:
                # The same request would fail the same way: give up at once.
                error = TransportError(
                    f"the request to {host} failed: {describe_request_failure(exc)}",
                    url=shown,
                    item=item,
                    hint="check labs_url and api_url, and the credentials",
                )
                final = True
            except ProtocolError as exc:
                error = exc
            # Raised here, outside the except blocks: a requests exception
            # quoting the URL or a header must not ride along as __context__.
            if final or not retryable(error):
                raise error
            failures += 1
            last = error
            if failures >= self.retry.attempts:
                break
            if isinstance(error, RateLimited):
                wait = self.retry.retry_after(error.retry_after, failures)
                self._gate.pause(host, wait)
            else:
                wait = self.retry.delay(failures)
                time.sleep(wait)
            self._log.info(
                "request_retry", url=shown, error=str(error), wait=round(wait, 3), failures=failures
            )
        assert last is not None
        raise last

    # --------------------------------------------------------------- auth

    def _mint_token(self) -> proto.SessionToken:
        cookie = self._credentials.cookie_header
        if cookie is None:
            raise TokenExpired("no cookie to mint a bearer token")
        url = f"{self.labs_url}{proto.SESSION_PATH}"
        token = self._call(
            url,
            {"Cookie": cookie},
            lambda r: proto.parse_session(read_json(r, "session answer")),
            role="labs",
        )
        self._log.info("bearer_token_minted", expires=str(token.expires))
        return token

    def bearer_token(self) -> str:
        """The bearer token in use, minted from the cookie when needed."""
        return self._tokens.get()

    def _api_call(self, url: str, handle: Callable[[requests.Response], T], *, item: str) -> T:
        """A request to the api host, renewing the bearer token once on a 401."""
        token = self._tokens.get()
        try:
            return self._call(url, proto.api_headers(token), handle, item=item, role="api")
        except AuthError as error:
            if isinstance(error, (LoginRequired, TokenExpired)) or error.status != 401:
                raise
        self._log.info("bearer_token_refused", item=item)
        token = self._tokens.refresh(token)
        try:
            return self._call(url, proto.api_headers(token), handle, item=item, role="api")
        except AuthError as error:
            if error.status == 401 and not isinstance(error, (LoginRequired, TokenExpired)):
                raise TokenExpired(
                    "the api host refused a freshly minted bearer token",
                    status=401,
                    item=item,
                    hint="check VEO3DL_API_KEY and log in again",
                ) from None
            raise

    # ------------------------------------------------------------ listing

    def fetch_listing_page(self, cursor: str | None, *, page: int = 1) -> proto.ParsedPage:
        """One raw listing page: the first when *cursor* is ``None``."""
        cookie = self._credentials.cookie_header
        if cookie is None:
            raise ConfigError(
                "listing the library needs the browser cookie", hint="set VEO3DL_COOKIE"
            )
        url = proto.listing_url(self.labs_url, cursor, self.page_size)
        headers = {"Cookie": cookie, "content-type": "application/json"}
        try:
            return self._call(
                url, headers, lambda r: proto.parse_listing(read_json(r, "listing")), role="labs"
            )
        except ApiError as error:
            if cursor is not None and error.status == 400:
                raise PaginationError(
                    f"the service refused the page token: {error}", page=page
                ) from None
            raise

    def iter_pages(self, *, max_pages: int | None = None) -> Listing:
        """The library page by page, each item once; see :class:`Listing`."""
        return Listing(
            self.fetch_listing_page, max_pages=max_pages or self.max_pages, log=self._log
        )

    def iter_items(self) -> Iterator[MediaItem]:
        """Every item of the library, each once, newest first."""
        for page in self.iter_pages():
            yield from page.items

    # ----------------------------------------------------------- one item

    def fetch_media_into(self, name: str, sink: Sink) -> MediaInfo:
        """Fetch item *name* from the api host, decoding its file into *sink*.

        The body streams: however large the file, memory stays bounded.  The
        sink is reset before each try.
        """
        name = proto.clean_name(name, "fetch_media")
        url = proto.media_url(self.api_url, name, self._require_key())

        def handle(response: requests.Response) -> MediaInfo:
            sink.reset()
            head = bytearray()

            def write(data: bytes) -> None:
                if len(head) < 64:
                    head.extend(data[: 64 - len(head)])
                sink.write(data)

            extractor = PayloadExtractor(write, where=f"media answer for {name[:60]}")
            for chunk in response.iter_content(_CHUNK):
                extractor.feed(chunk)
            payload, inline = proto.parse_media_payload(extractor.finish(), name=name)
            if inline is not None:  # a payload the scanner did not recognise as such
                raise ProtocolError(
                    "the file was not where expected", where=f"media answer for {name[:60]}"
                )
            kind = sniff(bytes(head))
            return MediaInfo(
                payload=payload,
                size=extractor.decoded,
                mime_type=kind.mime_type if kind else None,
                extension=kind.extension if kind else None,
            )

        return self._api_call(url, handle, item=name)

    def fetch_media(self, name: str) -> FetchedMedia:
        """Fetch item *name* into memory: its bytes, sniffed type, fresh URL and fields."""
        sink = BytesSink()
        info = self.fetch_media_into(name, sink)
        return FetchedMedia(data=sink.getvalue(), info=info)

    def download_signed_url(self, url: str, sink: Sink, *, item: str | None = None) -> int:
        """Stream a signed file URL, used verbatim, into *sink*; return the byte count.

        The URL's ``Expires`` is read first (:class:`UrlExpired` without a
        request); a cut connection resumes with ``Range``/``If-Range``.
        """
        return self._signed.download(url, sink, item=item)

    def _require_key(self) -> str:
        key = self._credentials.api_key
        if key is None:
            raise ConfigError("fetching media needs the API key", hint="set VEO3DL_API_KEY")
        return key
