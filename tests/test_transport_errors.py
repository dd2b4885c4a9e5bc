"""Failures beneath the protocol: redirects, requests' own errors, answers that are not JSON.

Whatever goes wrong, the caller gets a veo3dl error that names the item, and
no secret (api key, bearer token, signed URL's Signature) appears in it, in
its chained exceptions, or in the traceback that would be printed.  A tiny
scripted HTTP server on loopback plays the hosts that misbehave; the
emulator plays the ones that behave.
"""

from __future__ import annotations

import json
import threading
import traceback
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from veo3dl import (
    ApiError,
    Credentials,
    DownloadError,
    FlowClient,
    ProtocolError,
    RetryPolicy,
    TransportError,
    Veo3dlError,
)
from veo3dl._sinks import BytesSink
from veo3dl.testing import FlowEmulator

pytestmark = pytest.mark.timeout(60)

FAST = RetryPolicy(attempts=3, backoff=0.01, backoff_max=0.02)
SIGNATURE = "S3cretSignature%2Bzz%3D"
API_KEY = "AIzaSyTransportErrorsTestKey0123456789"
TOKEN = "ya29.transport-errors-test-token"


class Scripted:
    """A loopback HTTP server answering each path (query ignored) as scripted.

    ``answers[path] = (status, headers, body)``; unscripted paths get 404.
    ``seen`` lists the paths requested, in order.
    """

    def __init__(self) -> None:
        self.answers: dict[str, tuple[int, dict[str, str], bytes]] = {}
        self.seen: list[str] = []
        scripted = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.partition("?")[0]
                scripted.seen.append(path)
                status, headers, body = scripted.answers.get(path, (404, {}, b"no such path"))
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    def redirect(self, path: str, location: str, status: int = 302) -> None:
        """Answer *path* with a redirect to *location*."""
        self.answers[path] = (status, {"Location": location}, b"")

    def serve(self, path: str, body: bytes, status: int = 200) -> None:
        """Answer *path* with *body* as JSON."""
        self.answers[path] = (status, {"Content-Type": "application/json"}, body)

    def __enter__(self) -> Scripted:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)


@pytest.fixture
def scripted() -> Iterator[Scripted]:
    with Scripted() as server:
        yield server


@pytest.fixture
def flow() -> Iterator[FlowEmulator]:
    with FlowEmulator(items=4, videos=1) as emulator:
        yield emulator
        assert emulator.errors == []


def shown_text(error: BaseException) -> str:
    """Everything a human could see of *error*: messages, attributes, printed traceback."""
    parts = ["".join(traceback.format_exception(type(error), error, error.__traceback__))]
    seen: BaseException | None = error
    while seen is not None:  # every chained exception, printed or not
        parts.append(f"{type(seen).__name__}: {seen} {vars(seen)!r}")
        seen = seen.__cause__ or seen.__context__
    return "\n".join(parts)


def assert_no_secret(error: BaseException, *secrets: str) -> None:
    text = shown_text(error)
    for secret in secrets:
        assert secret not in text


def client_for(scripted: Scripted, **kwargs) -> FlowClient:
    kwargs.setdefault("retry", FAST)
    credentials = kwargs.pop(
        "credentials",
        Credentials(cookie="session-cookie-value", bearer_token=TOKEN, api_key=API_KEY),
    )
    return FlowClient(credentials, labs_url=scripted.url, api_url=scripted.url, **kwargs)


# ------------------------------------------------- signed URLs: redirects


def test_redirect_to_a_host_off_the_allow_list_is_refused(
    scripted: Scripted, flow: FlowEmulator
) -> None:
    item = flow.items[0]
    # The file is really there, but on "localhost", which this client does not allow.
    scripted.redirect("/file", flow.fife_url(item.name).replace("127.0.0.1", "localhost"))
    with client_for(scripted, allowed_file_hosts=frozenset({"127.0.0.1"})) as client:
        with pytest.raises(DownloadError, match="refusing redirect target") as info:
            client.download_signed_url(
                f"{scripted.url}/file?Signature={SIGNATURE}", BytesSink(), item=item.name
            )
    assert "'localhost'" in str(info.value) and info.value.item == item.name
    assert_no_secret(info.value, SIGNATURE)
    assert flow.requests("fife") == 0  # never fetched
    assert scripted.seen == ["/file"]  # and not retried


@pytest.mark.parametrize(
    "location",
    [
        "file:///etc/passwd",
        "ftp://127.0.0.1/x",
        "http://storage.googleapis.com/x",
        "//evil.example/x",
    ],
)
def test_redirect_to_a_foreign_scheme_or_host_is_refused(scripted: Scripted, location: str) -> None:
    scripted.redirect("/file", location)
    with client_for(scripted) as client, pytest.raises(DownloadError, match="refusing") as info:
        client.download_signed_url(
            f"{scripted.url}/file?Signature={SIGNATURE}", BytesSink(), item="CAMaItem"
        )
    assert info.value.item == "CAMaItem"
    assert_no_secret(info.value, SIGNATURE)
    assert scripted.seen == ["/file"]


def test_redirect_with_a_bad_port_is_refused(scripted: Scripted) -> None:
    scripted.redirect("/file", f"http://127.0.0.1:99999/x?Signature={SIGNATURE}")
    with client_for(scripted) as client, pytest.raises(DownloadError, match="malformed") as info:
        client.download_signed_url(f"{scripted.url}/file", BytesSink(), item="CAMaItem")
    assert_no_secret(info.value, SIGNATURE)


def test_redirect_loop_is_cut_short(scripted: Scripted) -> None:
    scripted.redirect("/loop", "/loop?again=1")  # relative, resolved against the current URL
    with client_for(scripted) as client, pytest.raises(DownloadError, match="redirected") as info:
        client.download_signed_url(
            f"{scripted.url}/loop?Signature={SIGNATURE}", BytesSink(), item="CAMaItem"
        )
    assert_no_secret(info.value, SIGNATURE)
    assert len(scripted.seen) == 6  # the first request and 5 redirects, not retried


def test_allowed_redirects_are_followed_and_the_target_used_verbatim(
    scripted: Scripted, flow: FlowEmulator
) -> None:
    item = next(i for i in flow.items if i.media_type == "VIDEO")
    target = flow.fife_url(item.name)
    assert "%2B" in target or "%2F" in target or "%3D" in target  # re-quoting would break it
    scripted.redirect("/first", "/second", status=301)
    scripted.redirect("/second", target, status=307)
    sink = BytesSink()
    with client_for(scripted) as client:
        size = client.download_signed_url(f"{scripted.url}/first", sink, item=item.name)
    assert size == item.size and sink.getvalue() == flow.content(item.name)
    assert scripted.seen == ["/first", "/second"]
    assert flow.requests("fife", name=item.name) == 1


# ------------------------------------------- signed URLs: refused up front


@pytest.mark.parametrize(
    "netloc",
    [
        "lh3.googleusercontent.com:99999",
        "lh3.googleusercontent.com:-1",
        "lh3.googleusercontent.com:http",
        "user:pw@lh3.googleusercontent.com",
    ],
)
def test_signed_url_with_a_bad_port_or_user_part_is_refused(netloc: str) -> None:
    url = f"https://{netloc}/image/abc?Expires=9999999999&Signature={SIGNATURE}"
    with FlowClient(Credentials()) as client, pytest.raises(DownloadError) as info:
        client.download_signed_url(url, BytesSink(), item="CAMaItem")
    assert "CAMaItem" in str(info.value) and "malformed" in str(info.value)
    assert_no_secret(info.value, SIGNATURE, "pw@")


# ------------------------------------------- labs and api hosts: _call


def test_redirect_loop_on_the_api_host_is_a_transport_error(scripted: Scripted) -> None:
    scripted.redirect("/v1/media/CAMaItem", "/v1/media/CAMaItem")
    with client_for(scripted) as client, pytest.raises(TransportError) as info:
        client.fetch_media("CAMaItem")
    assert "too many redirects" in str(info.value) and info.value.item == "CAMaItem"
    assert info.value.url is not None and "key=[REDACTED]" in info.value.url
    assert_no_secret(info.value, API_KEY, TOKEN)
    assert len(scripted.seen) == 6  # 1 + 5 redirects, and not tried again


def test_redirect_to_a_file_url_from_the_labs_host_is_a_transport_error(
    scripted: Scripted,
) -> None:
    scripted.redirect("/fx/api/trpc/media.fetchUserHistoryDirectly", "file:///etc/passwd")
    with client_for(scripted) as client, pytest.raises(TransportError) as info:
        list(client.iter_items())
    assert "cannot be fetched" in str(info.value)
    assert_no_secret(info.value, "session-cookie-value", "/etc/passwd")
    assert len(scripted.seen) == 1


def test_a_header_requests_refuses_does_not_leak_the_token(scripted: Scripted) -> None:
    # The session host hands out a token that cannot stand in a header;
    # requests' InvalidHeader would quote it whole.
    evil = "ya29.minted-secret\r\nX-Injected: 1"
    scripted.serve("/fx/api/auth/session", json.dumps({"user": {}, "access_token": evil}).encode())
    creds = Credentials(cookie="session-cookie-value", api_key=API_KEY)
    with client_for(scripted, credentials=creds) as client, pytest.raises(Veo3dlError) as info:
        client.fetch_media("CAMaItem")
    # A TransportError today; a ProtocolError if the session parser ever refuses such a token.
    assert isinstance(info.value, (TransportError, ProtocolError))
    assert_no_secret(info.value, "ya29.minted-secret", API_KEY)
    assert "/v1/media/CAMaItem" not in scripted.seen  # nothing sent with the broken header


# ------------------------------------------------- answers that are not JSON


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"[" * 100_000, "nested too deeply"),
        (b"]" * 10 + b"{", "not JSON"),
        (b'{"result": "\xff\xfe\xfa"}', "not JSON"),
    ],
    ids=["deep", "garbage", "bad-utf8"],
)
def test_listing_answer_that_is_not_json_is_a_protocol_error(
    scripted: Scripted, body: bytes, why: str
) -> None:
    scripted.serve("/fx/api/trpc/media.fetchUserHistoryDirectly", body)
    with client_for(scripted) as client, pytest.raises(ProtocolError, match=why) as info:
        list(client.iter_items())
    assert info.value.where == "listing"
    assert len(scripted.seen) == FAST.attempts  # a bad answer may be passing: retried


def test_deep_session_answer_is_a_protocol_error(scripted: Scripted) -> None:
    scripted.serve("/fx/api/auth/session", b"[" * 100_000)
    creds = Credentials(cookie="session-cookie-value", api_key=API_KEY)
    with client_for(scripted, credentials=creds) as client, pytest.raises(ProtocolError) as info:
        client.fetch_media("CAMaItem")
    assert info.value.where == "session answer"


def test_deep_error_body_is_still_an_api_error(scripted: Scripted) -> None:
    scripted.serve("/v1/media/CAMaItem", b"[" * 60_000, status=500)
    with client_for(scripted) as client, pytest.raises(ApiError) as info:
        client.fetch_media("CAMaItem")
    assert info.value.status == 500 and info.value.google_status is None
    assert len(scripted.seen) == FAST.attempts


# ------------------------------------------------------ resuming a cut file

_MIB = 1024 * 1024
V1, V2 = b"1" * (4 * _MIB), b"2" * (4 * _MIB)


class _Replacing(BaseHTTPRequestHandler):
    """Serves v1 cut after 2 MiB, then v2 - ignoring If-Range, as a careless cache might."""

    protocol_version = "HTTP/1.1"
    calls: list[tuple[str | None, str | None]]
    resume_etag: str
    second_total: int

    def do_GET(self) -> None:
        self.calls.append((self.headers.get("Range"), self.headers.get("If-Range")))
        if len(self.calls) == 1:
            self.send_response(200)
            self.send_header("ETag", '"v1"')
            self.send_header("Content-Length", str(len(V1)))
            self.end_headers()
            self.wfile.write(V1[: 2 * _MIB + 5])
            self.wfile.flush()
            self.connection.shutdown(2)
            return
        wanted = self.headers.get("Range")
        if wanted is None:
            self.send_response(200)
            self.send_header("ETag", '"v2"')
            self.send_header("Content-Length", str(len(V2)))
            self.end_headers()
            self.wfile.write(V2)
            return
        start = int(wanted.split("=")[1].rstrip("-"))
        body = V2[start:]
        self.send_response(206)
        self.send_header("ETag", self.resume_etag)
        self.send_header("Content-Range", f"bytes {start}-{len(V2) - 1}/{self.second_total}")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.mark.parametrize(
    ("resume_etag", "second_total"),
    [('"v2"', len(V2)), ('"v1"', len(V2) + 1)],  # (same validator, but another length)
    ids=["new-etag", "new-length"],
)
def test_a_resume_never_splices_two_versions_of_a_file(resume_etag: str, second_total: int) -> None:
    calls: list[tuple[str | None, str | None]] = []
    attributes = {"calls": calls, "resume_etag": resume_etag, "second_total": second_total}
    handler = type("Handler", (_Replacing,), attributes)
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02})
    thread.start()
    try:
        # Two tries: the cut is one failure; starting over on another version is none.
        two_tries = RetryPolicy(attempts=2, backoff=0.01, backoff_max=0.02)
        client = FlowClient(
            Credentials(), retry=two_tries, allowed_file_hosts=frozenset({"127.0.0.1"})
        )
        sink = BytesSink()
        with client:
            client.download_signed_url(f"http://127.0.0.1:{server.server_port}/f", sink, item="x")
        assert sink.getvalue() == V2  # the whole new version, never v1's head on v2's tail
        assert calls[1][0] is not None and calls[1][1] == '"v1"'  # it did try to resume
        assert calls[-1][0] is None and len(calls) == 3  # then started over, at once
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
