"""Downloading a signed file URL: verbatim, bounded in memory, resumable.

A signed URL (section 4 of the protocol) is fetched exactly as received —
its signature holds ``%2B``/``%2F``/``%3D`` and any re-encoding breaks it —
with no auth header.  Its ``Expires`` is read first, so a stale URL costs no
request.  The body streams into a sink in fixed chunks; when the connection
is cut, the next try asks for the rest with ``Range`` and ``If-Range`` (the
file's validator), and starts over only if the server no longer has the same
file.

Redirects are followed by hand, at most :data:`~veo3dl._http.MAX_REDIRECTS`
of them, and each target must pass the same checks as the signed URL itself
(scheme, allowed host): left to requests, a redirect could lead anywhere.
"""

from __future__ import annotations

import re
import time
from urllib.parse import urljoin, urlsplit

import requests

from veo3dl._failures import TRANSIENT_ERRORS, describe_request_failure, retryable_status
from veo3dl._http import MAX_REDIRECTS, HostGate, ProxyTable, RetryPolicy, host_of
from veo3dl._logging import get_logger
from veo3dl._protocol import parse_retry_after, signed_url_expires
from veo3dl._redaction import redact_url, url_for_humans
from veo3dl._sinks import Sink, read_at_most
from veo3dl._urls import DEFAULT_FILE_HOSTS, check_file_url
from veo3dl.exceptions import (
    ApiError,
    DownloadError,
    NotFoundError,
    RateLimited,
    TransportError,
    UrlExpired,
)

__all__ = ["SignedUrlDownloader"]

_log = get_logger(__name__)
_CHUNK = 1024 * 1024
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")
_XML_CODE = re.compile(rb"<Code>([A-Za-z]+)</Code>")
_EXPIRY_MARGIN = 5.0
_FRESH_URLS_HINT = "run a sync to get fresh URLs"


class _Resume:
    """What a cut download needs to ask for the rest of the same file."""

    __slots__ = ("restart", "total", "validator")

    def __init__(self) -> None:
        self.validator: str | None = None
        self.total: int | None = None
        self.restart = False  # the file changed under a resume: start over, no failure


class SignedUrlDownloader:
    """Streams signed file URLs into sinks for one :class:`~veo3dl.FlowClient`."""

    def __init__(
        self,
        session: requests.Session,
        retry: RetryPolicy,
        gate: HostGate,
        *,
        timeout: float | tuple[float, float],
        allowed_hosts: frozenset[str] | None,
        proxies: ProxyTable,
    ) -> None:
        self._proxies = proxies
        self._session = session
        self._retry = retry
        self._gate = gate
        self._timeout = timeout
        self.allowed_hosts = DEFAULT_FILE_HOSTS if allowed_hosts is None else allowed_hosts

    def download(self, url: str, sink: Sink, *, item: str | None = None) -> int:
        """Fetch *url* into *sink* (emptied first); return the file's size."""
        check_file_url(url, self.allowed_hosts, item=item)
        expires = signed_url_expires(url)
        if expires is not None and expires <= time.time() + _EXPIRY_MARGIN:
            raise UrlExpired(expired_at=expires, item=item)
        sink.reset()
        host = host_of(url)
        resume = _Resume()
        failures = 0
        while True:
            self._gate.wait(host)
            final = False
            try:
                if self._try_once(url, sink, resume, item):
                    return sink.size
                if resume.restart:  # the next try asks for the whole file: it cannot loop
                    resume.restart = False
                    continue
                error: Exception = TransportError(
                    "the file's body ended early", url=url_for_humans(url), item=item
                )
            except TRANSIENT_ERRORS as exc:
                error = TransportError(
                    f"{type(exc).__name__} while fetching the file",
                    url=url_for_humans(url),
                    item=item,
                )
            except requests.RequestException as exc:
                # Not a passing fault: the same request would fail the same way.
                error = DownloadError(
                    f"the file could not be requested: {describe_request_failure(exc)}",
                    item=item,
                    hint=_FRESH_URLS_HINT,
                )
                final = True
            except RateLimited as exc:
                error = exc
            except ApiError as exc:
                error = exc
                final = not retryable_status(exc.status)
            # Raised here, outside the except blocks: a requests exception
            # quoting the signed URL must not ride along as __context__.
            failures += 1
            if final or failures >= self._retry.attempts:
                raise error
            if isinstance(error, RateLimited):
                self._gate.pause(host, self._retry.retry_after(error.retry_after, failures))
            else:
                time.sleep(self._retry.delay(failures))
            if resume.validator is None:
                sink.reset()
            _log.info("file_retry", item=item, error=str(error), have=sink.size, failures=failures)

    def _try_once(self, url: str, sink: Sink, resume: _Resume, item: str | None) -> bool:
        """One try, redirects followed; True when the whole file is in *sink*."""
        headers = {"Accept-Encoding": "identity"}
        resuming = sink.size > 0 and resume.validator is not None
        if resuming:
            assert resume.validator is not None
            headers["Range"] = f"bytes={sink.size}-"
            headers["If-Range"] = resume.validator
        current = url
        for _ in range(MAX_REDIRECTS + 1):
            with self._send(current, headers) as response:
                location = self._session.get_redirect_target(response)
                if location is None:
                    return self._receive(response, current, sink, resume, item, resuming=resuming)
            current = self._next_hop(current, location, item)
        raise DownloadError(
            f"the file server redirected more than {MAX_REDIRECTS} times",
            item=item,
            hint=_FRESH_URLS_HINT,
        )

    def _send(self, url: str, headers: dict[str, str]) -> requests.Response:
        prepared = self._session.prepare_request(requests.Request("GET", url, headers=headers))
        prepared.url = url  # verbatim: requests would re-quote it
        return self._session.send(
            prepared,
            stream=True,
            timeout=self._timeout,
            proxies=self._proxies.for_url(url),
            allow_redirects=False,
        )

    def _next_hop(self, current: str, location: str, item: str | None) -> str:
        """Where a redirect from *current* leads, if that place may be fetched."""
        target: str | None
        try:
            # An absolute target is used verbatim, like the signed URL itself.
            target = location if urlsplit(location).scheme else urljoin(current, location)
        except ValueError:
            target = None
        if target is None:
            raise DownloadError(
                "refusing a malformed redirect target", item=item, hint=_FRESH_URLS_HINT
            )
        check_file_url(target, self.allowed_hosts, item=item, what="redirect target")
        return target

    def _receive(
        self,
        response: requests.Response,
        url: str,
        sink: Sink,
        resume: _Resume,
        item: str | None,
        *,
        resuming: bool,
    ) -> bool:
        """Take a final (non-redirect) answer into *sink*; True when the file is whole."""
        status = response.status_code
        if status == 206 and resuming:
            total = self._check_range(response, sink.size)
            if total is None or not self._same_file(response, resume, total):
                # Another version of the file (or an answer we cannot place):
                # splicing its tail onto what we hold would make a chimera.
                sink.reset()
                resume.validator = None
                resume.restart = True
                return False
            resume.total = total
        elif status == 200:
            if sink.size:
                sink.reset()  # the server sent the whole file again
            resume.total = _int_header(response, "Content-Length")
            resume.validator = _validator(response)
        else:
            raise self._error(response, url, item)
        for chunk in response.iter_content(_CHUNK):
            sink.write(chunk)
        return resume.total is None or sink.size == resume.total

    @staticmethod
    def _same_file(response: requests.Response, resume: _Resume, total: int) -> bool:
        """True when a 206 is a part of the file the first answer began."""
        if resume.total is not None and total != resume.total:
            return False
        now = _validator(response)
        return now is None or now == resume.validator

    @staticmethod
    def _check_range(response: requests.Response, have: int) -> int | None:
        match = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", "").strip())
        if not match or int(match.group(1)) != have:
            return None
        return None if match.group(3) == "*" else int(match.group(3))

    @staticmethod
    def _error(response: requests.Response, url: str, item: str | None) -> Exception:
        status = response.status_code
        body = read_at_most(response, 16384)
        code_match = _XML_CODE.search(body)
        code = code_match.group(1).decode() if code_match else None
        shown = redact_url(url)
        if code == "ExpiredToken" or (status in (400, 403) and b"xpired" in body):
            return UrlExpired("the file server says the signed URL has expired", item=item)
        if status == 429:
            wait = parse_retry_after(response.headers.get("Retry-After"), now=time.time())
            return RateLimited(
                "the file server is rate limiting", retry_after=wait, url=shown, item=item
            )
        if status == 404:
            return NotFoundError(
                "the file server has no such file", status=404, url=shown, item=item
            )
        if retryable_status(status):
            return ApiError(
                f"file server answered HTTP {status}", status=status, url=shown, item=item
            )
        return DownloadError(
            f"the file server refused the signed URL (HTTP {status}{', ' + code if code else ''})",
            item=item,
            hint=_FRESH_URLS_HINT,
        )


def _int_header(response: requests.Response, name: str) -> int | None:
    value = response.headers.get(name)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _validator(response: requests.Response) -> str | None:
    """A validator usable in ``If-Range``: a strong ETag, else Last-Modified."""
    etag = response.headers.get("ETag")
    if etag and not etag.startswith("W/"):
        return etag
    return response.headers.get("Last-Modified")
