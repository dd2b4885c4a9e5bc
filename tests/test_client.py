"""FlowClient against the emulator: listing, media, auth and every fault."""

from __future__ import annotations

import io
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

from veo3dl import (
    ApiError,
    ConfigError,
    Credentials,
    DownloadError,
    FlowClient,
    ListingStop,
    LoginRequired,
    NotFoundError,
    PaginationError,
    ProtocolError,
    RateLimited,
    RetryPolicy,
    TokenExpired,
    TransportError,
    UrlExpired,
)
from veo3dl._sinks import BytesSink
from veo3dl.testing import Fault, FlowEmulator

pytestmark = pytest.mark.timeout(60)

FAST = RetryPolicy(attempts=4, backoff=0.01, backoff_max=0.05, retry_after_max=0.2)


@pytest.fixture
def flow() -> Iterator[FlowEmulator]:
    with FlowEmulator() as emulator:
        yield emulator
        assert emulator.errors == []
        assert emulator.deviations == []  # veo3dl sends what the web app sends


def make_client(flow: FlowEmulator, credentials: Credentials | None = None, **kwargs) -> FlowClient:
    kwargs.setdefault("retry", FAST)
    return FlowClient(
        credentials or flow.credentials, labs_url=flow.labs_url, api_url=flow.api_url, **kwargs
    )


class RecordingGate:
    """A host gate that records pauses instead of sleeping them out."""

    def __init__(self) -> None:
        self.pauses: list[tuple[str, float]] = []

    def wait(self, host: str) -> None:
        pass

    def pause(self, host: str, seconds: float) -> None:
        self.pauses.append((host, seconds))


# ------------------------------------------------------------------ listing


def test_listing_follows_every_page_without_meta(flow: FlowEmulator) -> None:
    with make_client(flow) as client:
        listing = client.iter_pages()
        pages = list(listing)
    assert [len(p.items) for p in pages] == [18, 18, 6]
    assert listing.stop is ListingStop.END and listing.complete
    names = [item.name for page in pages for item in page.items]
    assert names == [item.name for item in flow.items]  # newest first, whitespace gone
    assert len(set(names)) == 42
    assert flow.requests("listing") == 3


def test_listing_items_are_parsed(flow: FlowEmulator) -> None:
    with make_client(flow) as client:
        items = {item.name: item for item in client.iter_items()}
    for expected in flow.items:
        item = items[expected.name]
        assert item.media_type.value == expected.media_type
        assert item.media_key == expected.media_key
        assert item.create_time == expected.create_time
        assert item.create_time.tzinfo is not None
        assert item.aspect_ratio == expected.aspect_ratio
        assert item.workflow_id == expected.workflow_id
        assert item.project_id == expected.project_id
    assert any("$" in name for name in items)


def test_listing_loop_guard_on_repeated_token(flow: FlowEmulator) -> None:
    flow.inject(Fault.loop_token(), endpoint="listing", times=None)
    with make_client(flow) as client:
        listing = client.iter_pages()
        names = [item.name for page in listing for item in page.items]
    assert listing.stop in (ListingStop.REPEATED_TOKEN, ListingStop.ALL_SEEN)
    assert listing.stop.loop_guard
    assert len(names) == len(set(names))
    assert flow.requests("listing") <= 3


def test_listing_drops_repeated_items(flow: FlowEmulator) -> None:
    flow.inject(Fault.repeat_items(count=4), endpoint="listing", times=None)
    with make_client(flow) as client:
        listing = client.iter_pages()
        names = [item.name for page in listing for item in page.items]
    assert sorted(names) == sorted(item.name for item in flow.items)
    assert listing.repeated > 0


def test_listing_page_bound(flow: FlowEmulator) -> None:
    with make_client(flow, max_pages=2) as client:
        listing = client.iter_pages()
        pages = list(listing)
    assert len(pages) == 2
    assert listing.stop is ListingStop.PAGE_LIMIT and not listing.complete


def test_refused_page_token_is_a_pagination_error(flow: FlowEmulator) -> None:
    with make_client(flow) as client, pytest.raises(PaginationError) as info:
        client.fetch_listing_page("not-a-real-token", page=2)
    assert info.value.page == 2


def test_listing_survives_transient_faults(flow: FlowEmulator) -> None:
    flow.inject(Fault.status(503), endpoint="listing", times=1)
    flow.inject(Fault.reset(), endpoint="listing", times=1)
    flow.inject(Fault.truncate(), endpoint="listing", times=1)
    with make_client(flow) as client:
        assert len(list(client.iter_items())) == 42
    assert flow.requests("listing") == 6


def test_stale_cookie_says_log_in_again(flow: FlowEmulator) -> None:
    flow.stale_cookie = True
    with make_client(flow) as client, pytest.raises(LoginRequired) as info:
        list(client.iter_items())
    assert "log in again" in str(info.value)
    assert flow.requests("listing") == 1  # not retried


def test_listing_needs_a_cookie(flow: FlowEmulator) -> None:
    creds = Credentials(
        api_key=flow.credentials.api_key, bearer_token=flow.credentials.bearer_token
    )
    with make_client(flow, creds) as client, pytest.raises(ConfigError, match="VEO3DL_COOKIE"):
        list(client.iter_items())


# ------------------------------------------------------------------- media


def test_every_item_fetched_byte_exact_with_raw_names(flow: FlowEmulator) -> None:
    with make_client(flow) as client:
        for item in flow.items:
            fetched = client.fetch_media(item.name)
            assert fetched.data == flow.content(item.name), item.name
            assert fetched.mime_type == item.mime_type
            assert fetched.info.payload.shape.split(".")[0] == item.shape
            assert fetched.fife_url is not None
    dollar_names = [i.name for i in flow.items if "$" in i.name]
    assert dollar_names
    assert flow.requests("media") == 42  # no 400 retried: "$" went raw


def test_media_extra_fields(flow: FlowEmulator) -> None:
    item = next(i for i in flow.items if i.shape == "image")
    video = next(i for i in flow.items if i.media_type == "VIDEO")
    with make_client(flow) as client:
        image_info = client.fetch_media(item.name).info.payload
        video_info = client.fetch_media(video.name).info.payload
    assert (image_info.seed, image_info.prompt, image_info.model) == (
        item.seed,
        item.prompt,
        item.model,
    )
    assert video_info.shape == "video.encodedVideo"
    assert (video_info.seed, video_info.model) == (video.seed, video.model)


def test_percent_24_is_what_the_service_refuses(flow: FlowEmulator) -> None:
    import requests

    item = next(i for i in flow.items if "$" in i.name)
    token = flow.credentials.bearer_token
    url = f"{flow.api_url}/v1/media/{item.name.replace('$', '%24')}?key={flow.credentials.api_key}"
    answer = requests.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert answer.status_code == 400  # the emulator is faithful; the client never sends this


def test_media_is_streamed_in_bounded_memory(tmp_path: Path) -> None:
    size = 40 * 1024 * 1024
    with FlowEmulator(items=2, videos=1, video_bytes=(size, size)) as flow:
        video = next(i for i in flow.items if i.media_type == "VIDEO")
        sink = FileSink(tmp_path / "video.bin")
        with make_client(flow) as client:
            tracemalloc.start()
            info = client.fetch_media_into(video.name, sink)
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
        assert info.size == size and info.mime_type == "video/mp4"
        assert (tmp_path / "video.bin").read_bytes() == flow.content(video.name)
    assert peak < 8 * 1024 * 1024, f"peak {peak / 1e6:.1f} MB for a {size / 1e6:.0f} MB video"


class FileSink:
    def __init__(self, path: Path) -> None:
        self._file = path.open("w+b")

    @property
    def size(self) -> int:
        return self._file.tell()

    def write(self, data: bytes) -> None:
        self._file.write(data)

    def reset(self) -> None:
        self._file.seek(0)
        self._file.truncate()


@pytest.mark.parametrize(
    "fault",
    [Fault.status(500), Fault.status(503), Fault.truncate(), Fault.reset(), Fault.html()],
    ids=["500", "503", "truncated", "reset", "html-200"],
)
def test_media_transient_faults_are_retried(flow: FlowEmulator, fault: Fault) -> None:
    item = flow.items[3]
    flow.inject(fault, endpoint="media", name=item.name, times=2)
    with make_client(flow) as client:
        assert client.fetch_media(item.name).data == flow.content(item.name)
    assert flow.requests("media", name=item.name) == 3


def test_slow_drip_past_read_timeout_is_retried(flow: FlowEmulator) -> None:
    item = flow.items[1]
    flow.inject(Fault.drip(delay=2.0, chunk=512), endpoint="media", name=item.name, times=1)
    with make_client(flow, timeout=(5.0, 0.5)) as client:
        assert client.fetch_media(item.name).data == flow.content(item.name)
    assert flow.requests("media", name=item.name) == 2


@pytest.mark.parametrize("status", [408, 501, 505, 507, 599])
def test_every_5xx_is_retried(flow: FlowEmulator, status: int) -> None:
    item = flow.items[3]
    flow.inject(Fault.status(status), endpoint="media", name=item.name, times=2)
    flow.inject(Fault.status(status), endpoint="fife", name=item.name, times=2)
    with make_client(flow) as client:
        fetched = client.fetch_media(item.name)
        assert fetched.data == flow.content(item.name) and fetched.fife_url is not None
        sink = BytesSink()
        client.download_signed_url(fetched.fife_url, sink, item=item.name)
    assert sink.getvalue() == flow.content(item.name)
    assert flow.requests("media", name=item.name) == 3
    assert flow.requests("fife", name=item.name) == 3


@pytest.mark.parametrize("status", [400, 403, 409, 410])
def test_other_4xx_are_not_retried(flow: FlowEmulator, status: int) -> None:
    item = flow.items[3]
    flow.inject(Fault.status(status), endpoint="media", name=item.name, times=None)
    with make_client(flow) as client, pytest.raises(ApiError) as info:
        client.fetch_media(item.name)
    assert info.value.status == status
    assert flow.requests("media", name=item.name) == 1


def test_media_gives_up_after_its_attempts(flow: FlowEmulator) -> None:
    item = flow.items[0]
    flow.inject(Fault.status(502), endpoint="media", name=item.name, times=None)
    with make_client(flow) as client, pytest.raises(ApiError) as info:
        client.fetch_media(item.name)
    assert info.value.status == 502 and info.value.item == item.name
    assert flow.requests("media", name=item.name) == FAST.attempts


def test_reset_every_time_is_a_transport_error(flow: FlowEmulator) -> None:
    item = flow.items[0]
    flow.inject(Fault.reset(), endpoint="media", name=item.name, times=None)
    with make_client(flow) as client, pytest.raises(TransportError) as info:
        client.fetch_media(item.name)
    assert "key=" not in str(info.value) or "[REDACTED]" in str(info.value)
    assert flow.credentials.api_key not in str(info.value)


def test_not_found_is_not_retried(flow: FlowEmulator) -> None:
    with make_client(flow) as client, pytest.raises(NotFoundError) as info:
        client.fetch_media("CAMaNoSuchItem")
    assert info.value.status == 404 and info.value.google_status == "NOT_FOUND"
    assert flow.requests("media") == 1


def test_google_error_body_is_mapped(flow: FlowEmulator) -> None:
    item = flow.items[2]
    flow.inject(
        Fault.status(403, google_status="PERMISSION_DENIED", reason="PUBLIC_ERROR_SOMETHING"),
        endpoint="media",
        name=item.name,
    )
    with make_client(flow) as client, pytest.raises(ApiError) as info:
        client.fetch_media(item.name)
    error = info.value
    assert (error.status, error.google_status, error.reason) == (
        403,
        "PERMISSION_DENIED",
        "PUBLIC_ERROR_SOMETHING",
    )
    assert flow.credentials.api_key not in str(error) and flow.credentials.api_key not in (
        error.url or ""
    )


@pytest.mark.parametrize("retry_after", [1, "http-date"])
def test_rate_limit_pauses_the_host_for_retry_after(flow: FlowEmulator, retry_after) -> None:
    from datetime import datetime, timedelta, timezone

    value = (
        retry_after
        if retry_after != "http-date"
        else datetime.now(timezone.utc) + timedelta(seconds=30)
    )
    item = flow.items[4]
    flow.inject(Fault.rate_limited(retry_after=value), endpoint="media", name=item.name, times=1)
    gate = RecordingGate()
    policy = RetryPolicy(attempts=3, backoff=0.01, retry_after_max=5.0)
    with make_client(flow, gate=gate, retry=policy) as client:
        assert client.fetch_media(item.name).data == flow.content(item.name)
    [(host, seconds)] = gate.pauses
    assert host == flow.api_url
    if retry_after == 1:
        assert seconds == 1
    else:
        assert seconds == 5.0  # 30 s asked, capped at retry_after_max


def test_rate_limited_to_the_end_raises_rate_limited(flow: FlowEmulator) -> None:
    item = flow.items[4]
    flow.inject(Fault.rate_limited(retry_after=7), endpoint="media", name=item.name, times=None)
    with make_client(flow, gate=RecordingGate()) as client, pytest.raises(RateLimited) as info:
        client.fetch_media(item.name)
    assert info.value.retry_after == 7
    assert info.value.reason == "PUBLIC_ERROR_USER_REQUESTS_THROTTLED"


# -------------------------------------------------------------------- auth


def test_bearer_is_minted_from_the_cookie_once(flow: FlowEmulator) -> None:
    creds = Credentials(cookie=flow.credentials.cookie, api_key=flow.credentials.api_key)
    with make_client(flow, creds) as client:
        for item in flow.items[:5]:
            client.fetch_media(item.name)
    assert flow.requests("session") == 1


def test_expired_bearer_is_refreshed_once_per_expiry(flow: FlowEmulator) -> None:
    with make_client(flow) as client:
        client.fetch_media(flow.items[0].name)
        flow.expire_tokens()
        for item in flow.items[1:4]:
            assert client.fetch_media(item.name).data == flow.content(item.name)
    assert flow.requests("session") == 1


def test_tokens_dying_after_n_calls() -> None:
    with FlowEmulator(items=10, videos=0, token_calls=3) as flow:
        creds = Credentials(cookie=flow.credentials.cookie, api_key=flow.credentials.api_key)
        with make_client(flow, creds) as client:
            for item in flow.items:
                assert client.fetch_media(item.name).data == flow.content(item.name)
        assert flow.requests("session") == 4  # 10 calls / 3 per token


class Clock:
    """A clock the test moves by hand; starts at the real time."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def test_failed_early_renewal_goes_on_with_the_valid_token(flow: FlowEmulator) -> None:
    creds = Credentials(cookie=flow.credentials.cookie, api_key=flow.credentials.api_key)
    clock = Clock()  # the client's view of time; the emulator keeps the real one
    with make_client(flow, creds) as minter:
        source = minter.own_token_source(clock=clock)
        with make_client(flow, creds, token_source=source) as client:
            assert client.fetch_media(flow.items[0].name).data == flow.content(flow.items[0].name)
            assert flow.requests("session") == 1
            first = client.bearer_token()
            # Due for early renewal (within the last 300 s), but still valid for
            # a good while: the session host failing must not fail the request.
            clock.now += 3600 - 120
            handle = flow.inject(Fault.status(503), endpoint="session", times=None)
            item = flow.items[1]
            assert client.fetch_media(item.name).data == flow.content(item.name)
            assert flow.requests("session") == 1 + FAST.attempts
            assert client.bearer_token() == first
            assert flow.requests("session") == 1 + FAST.attempts  # not asked again at once
            # Once the token has expired by the client's clock, renewing is needed:
            # its failure is the request's.
            clock.now += 180
            with pytest.raises(ApiError) as info:
                client.fetch_media(item.name)
            assert info.value.status == 503
            handle.remove()
            assert client.fetch_media(item.name).data == flow.content(item.name)
            assert client.bearer_token() != first


def test_expired_bearer_without_cookie_is_token_expired(flow: FlowEmulator) -> None:
    creds = Credentials(
        bearer_token=flow.credentials.bearer_token, api_key=flow.credentials.api_key
    )
    flow.expire_tokens()
    with make_client(flow, creds) as client, pytest.raises(TokenExpired, match="VEO3DL_COOKIE"):
        client.fetch_media(flow.items[0].name)


def test_stale_cookie_while_minting_is_login_required(flow: FlowEmulator) -> None:
    creds = Credentials(cookie=flow.credentials.cookie, api_key=flow.credentials.api_key)
    flow.stale_cookie = True
    with make_client(flow, creds) as client, pytest.raises(LoginRequired):
        client.fetch_media(flow.items[0].name)
    assert flow.requests("session") == 1


def test_missing_api_key_is_a_config_error(flow: FlowEmulator) -> None:
    creds = Credentials(cookie=flow.credentials.cookie)
    with make_client(flow, creds) as client, pytest.raises(ConfigError, match="VEO3DL_API_KEY"):
        client.fetch_media(flow.items[0].name)


@pytest.mark.parametrize(
    "url", ["labs.google", "ftp://x", "https://labs.google/fx", "https://h:99999"]
)
def test_bad_base_urls_are_config_errors(url: str) -> None:
    with pytest.raises(ConfigError):
        FlowClient(Credentials(), labs_url=url)


# -------------------------------------------------------------- signed URLs


def test_signed_url_is_fetched_verbatim(flow: FlowEmulator) -> None:
    item = flow.items[5]
    url = flow.fife_url(item.name)
    assert "%2B" in url or "%2F" in url or "%3D" in url
    sink = BytesSink()
    with make_client(flow) as client:
        assert client.download_signed_url(url, sink, item=item.name) == item.size
    assert sink.getvalue() == flow.content(item.name)


def test_expired_signed_url_costs_no_request(flow: FlowEmulator) -> None:
    item = flow.items[5]
    flow.inject(Fault.expired_fife(), endpoint="media", name=item.name)
    with make_client(flow) as client:
        url = client.fetch_media(item.name).fife_url
        assert url is not None
        with pytest.raises(UrlExpired):
            client.download_signed_url(url, BytesSink(), item=item.name)
    assert flow.requests("fife") == 0


def test_cut_download_resumes_with_range(flow: FlowEmulator) -> None:
    item = next(i for i in flow.items if i.media_type == "VIDEO")
    flow.inject(Fault.truncate(), endpoint="fife", name=item.name, times=2)
    sink = BytesSink()
    with make_client(flow) as client:
        client.download_signed_url(flow.fife_url(item.name), sink, item=item.name)
    assert sink.getvalue() == flow.content(item.name)
    assert flow.requests("fife", name=item.name) == 3


def test_foreign_file_hosts_and_schemes_are_refused(flow: FlowEmulator) -> None:
    with make_client(flow) as client:
        for url in [
            "file:///etc/passwd",
            "ftp://storage.googleapis.com/x",
            "https://evil.example/x",
        ]:
            with pytest.raises(DownloadError, match="refusing"):
                client.download_signed_url(url, BytesSink(), item="x")
        with pytest.raises(DownloadError):
            client.download_signed_url("http://storage.googleapis.com/x", BytesSink())


def test_tampered_signature_is_refused(flow: FlowEmulator) -> None:
    item = flow.items[5]
    url = flow.fife_url(item.name).replace("%2B", "+").replace("%2F", "/").replace("%3D", "=")
    with make_client(flow) as client, pytest.raises(DownloadError, match="refused"):
        client.download_signed_url(url, BytesSink(), item=item.name)


def test_protocol_error_names_where(flow: FlowEmulator) -> None:
    item = flow.items[0]
    flow.inject(Fault.html(), endpoint="media", name=item.name, times=None)
    with make_client(flow) as client, pytest.raises(ProtocolError) as info:
        client.fetch_media(item.name)
    assert "media answer" in info.value.where or "listing" in info.value.where


def test_client_repr_has_no_secret(flow: FlowEmulator) -> None:
    client = make_client(flow)
    text = repr(client) + str(io.StringIO())
    for secret in flow.credentials.secrets():
        assert secret not in text
    client.close()
