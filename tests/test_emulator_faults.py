"""FlowEmulator's injected faults: each kind, where it applies, how often it fires."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote, urlsplit

import pytest
import requests

from veo3dl.testing import Fault, FlowEmulator

LISTING = "/fx/api/trpc/media.fetchUserHistoryDirectly"


@pytest.fixture
def emulator() -> Iterator[FlowEmulator]:
    with FlowEmulator(items=42, videos=6, image_bytes=(40_000, 60_000)) as flow:
        yield flow
        assert flow.errors == []


def media(flow: FlowEmulator, name: str, **kw: Any) -> requests.Response:
    creds = flow.credentials
    return requests.get(
        f"{flow.api_url}/v1/media/{name}?key={creds.api_key}&clientContext.tool=PINHOLE",
        headers={"Authorization": f"Bearer {creds.bearer_token}"},
        **kw,
    )


def session(flow: FlowEmulator, **kw: Any) -> requests.Response:
    return requests.get(
        flow.labs_url + "/fx/api/auth/session", headers={"Cookie": flow.credentials.cookie}, **kw
    )


def page(flow: FlowEmulator, cursor: str | None = None) -> dict[str, Any]:
    document: dict[str, Any] = {"json": {"type": "ASSET_MANAGER", "pageSize": 18, "cursor": cursor}}
    if cursor is None:
        document["meta"] = {"values": {"cursor": ["undefined"]}}
    response = requests.get(
        f"{flow.labs_url}{LISTING}?input={quote(json.dumps(document))}",
        headers={"Cookie": flow.credentials.cookie},
    )
    assert response.status_code == 200, response.text
    return response.json()["result"]["data"]["json"]["result"]  # type: ignore[no-any-return]


def names(result: dict[str, Any]) -> list[str]:
    return [item["name"].replace("\r\n", "").strip() for item in result["userWorkflows"]]


def raw_exchange(url: str) -> tuple[bytes, bytes]:
    """Send a GET on a raw socket; return (head, body) read until the server closes."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=5) as sock:
        sock.sendall(f"GET {parts.path}?{parts.query} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return head, body


def content_length(head: bytes) -> int:
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return int(line.split(b":")[1])
    raise AssertionError(head)


# --- answer-replacing faults -------------------------------------------------


def test_status_fault_fires_once_then_heals(emulator: FlowEmulator) -> None:
    name = emulator.items[0].name
    handle = emulator.inject(Fault.status(503), endpoint="media")
    first = media(emulator, name)
    assert first.status_code == 503
    assert first.json()["error"] == {
        "code": 503,
        "message": "Injected error 503.",
        "status": "UNAVAILABLE",
    }
    assert media(emulator, name).status_code == 200
    assert handle.fired == 1
    assert not handle.active
    assert emulator.requests("media", name) == 2  # the faulted one counts


def test_status_fault_with_details_and_on_files_as_xml(emulator: FlowEmulator) -> None:
    name = emulator.items[0].name
    emulator.inject(
        Fault.status(
            429,
            google_status="RESOURCE_EXHAUSTED",
            reason="PUBLIC_ERROR_UNUSUAL_ACTIVITY_TOO_MUCH_TRAFFIC",
        ),
        endpoint="media",
    )
    error = media(emulator, name).json()["error"]
    assert error["details"][0]["reason"] == "PUBLIC_ERROR_UNUSUAL_ACTIVITY_TOO_MUCH_TRAFFIC"
    emulator.inject(Fault.status(500), endpoint="fife")
    response = requests.get(emulator.fife_url(name))
    assert response.status_code == 500
    assert response.headers["Content-Type"].startswith("application/xml")
    assert b"<Code>InternalError</Code>" in response.content


@pytest.mark.parametrize(
    ("retry_after", "header"),
    [
        (2, "2"),
        ("Wed, 21 Oct 2015 07:28:00 GMT", "Wed, 21 Oct 2015 07:28:00 GMT"),
        (datetime(2030, 1, 2, 3, 4, 5, tzinfo=timezone.utc), "Wed, 02 Jan 2030 03:04:05 GMT"),
        (None, None),
    ],
)
def test_rate_limited(emulator: FlowEmulator, retry_after: Any, header: str | None) -> None:
    emulator.inject(Fault.rate_limited(retry_after), endpoint="media")
    response = media(emulator, emulator.items[0].name)
    assert response.status_code == 429
    assert response.headers.get("Retry-After") == header
    error = response.json()["error"]
    assert error["status"] == "RESOURCE_EXHAUSTED"
    assert error["details"][0]["reason"] == "PUBLIC_ERROR_USER_REQUESTS_THROTTLED"


def test_html_page_instead_of_the_file(emulator: FlowEmulator) -> None:
    name = emulator.items[0].name
    emulator.inject(Fault.html(), endpoint="fife")
    response = requests.get(emulator.fife_url(name))
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/html")
    assert response.content.lstrip().lower().startswith(b"<!doctype html")
    emulator.inject(Fault.html(), endpoint="media")
    assert media(emulator, name).headers["Content-Type"].startswith("text/html")


def test_json_200_on_files(emulator: FlowEmulator) -> None:
    emulator.inject(Fault.json_200(), endpoint="fife")
    response = requests.get(emulator.fife_url(emulator.items[0].name))
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/json")
    assert "error" in response.json()


def test_reset_closes_without_an_answer(emulator: FlowEmulator) -> None:
    name = emulator.items[0].name
    emulator.inject(Fault.reset(), endpoint="fife", times=2)
    with pytest.raises(requests.ConnectionError):
        requests.get(emulator.fife_url(name))
    parts = urlsplit(emulator.fife_url(name))
    with socket.create_connection((parts.hostname, parts.port), timeout=5) as sock:
        sock.sendall(f"GET {parts.path}?{parts.query} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        with pytest.raises(ConnectionResetError):
            sock.recv(1024)
    assert requests.get(emulator.fife_url(name)).status_code == 200
    assert emulator.requests("fife", name) == 3


# --- delivery faults -----------------------------------------------------------


def test_truncate_sends_half_then_closes(emulator: FlowEmulator) -> None:
    item = emulator.items[0]
    emulator.inject(Fault.truncate(), endpoint="fife")
    head, body = raw_exchange(emulator.fife_url(item.name))
    assert head.startswith(b"HTTP/1.1 200")
    assert content_length(head) == item.size
    assert len(body) == item.size // 2
    assert body == emulator.content(item.name)[: item.size // 2]
    emulator.inject(Fault.truncate(), endpoint="media")
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        media(emulator, item.name)


def test_short_length_looks_complete(emulator: FlowEmulator) -> None:
    item = emulator.items[0]
    emulator.inject(Fault.short_length(), endpoint="fife", name=item.name)
    with requests.Session() as s:
        response = s.get(emulator.fife_url(item.name))
        assert response.status_code == 200
        assert int(response.headers["Content-Length"]) == len(response.content) == item.size // 2
        assert response.content == emulator.content(item.name)[: item.size // 2]
        before = emulator.connections()
        assert s.get(emulator.fife_url(item.name)).content == emulator.content(item.name)
        assert emulator.connections() == before  # the connection stayed usable


def test_drip_trips_a_read_timeout(emulator: FlowEmulator) -> None:
    item = emulator.items[0]
    emulator.inject(Fault.drip(delay=2.0, chunk=100), endpoint="fife")
    started = time.perf_counter()
    # A read timeout in the middle of a body surfaces as a ConnectionError.
    with pytest.raises(requests.exceptions.ConnectionError, match="Read timed out"):
        requests.get(emulator.fife_url(item.name), timeout=(5, 0.2))
    assert time.perf_counter() - started < 1.5


def test_drip_delivers_everything_eventually(emulator: FlowEmulator) -> None:
    item = emulator.items[0]
    emulator.inject(Fault.drip(delay=0.01, chunk=16384), endpoint="fife")
    response = requests.get(emulator.fife_url(item.name))
    assert response.content == emulator.content(item.name)


def test_latency_fault_and_global_latency() -> None:
    with FlowEmulator(items=2, videos=0, latency=0.15) as flow:
        started = time.perf_counter()
        assert session(flow).status_code == 200
        assert time.perf_counter() - started >= 0.15
        flow.inject(Fault.latency(0.3), endpoint="session")
        started = time.perf_counter()
        assert session(flow).status_code == 200
        assert time.perf_counter() - started >= 0.45


# --- URL and listing faults ------------------------------------------------


def test_expired_fife_from_listing_and_media(emulator: FlowEmulator) -> None:
    emulator.inject(Fault.expired_fife(), endpoint="listing", times=None)
    first = page(emulator)["userWorkflows"]
    url = next(
        value["fifeUrl"]
        for item in first
        for value in item["media"].values()
        if isinstance(value, dict) and "fifeUrl" in value
    )
    expires = int(url.split("Expires=")[1].split("&")[0])
    assert expires < time.time()
    response = requests.get(url)
    assert response.status_code == 400
    assert b"<Code>ExpiredToken</Code>" in response.content
    emulator.clear_faults()
    item = emulator.items[0]
    emulator.inject(Fault.expired_fife(), endpoint="media", name=item.name)
    stale = media(emulator, item.name).json()[item.shape]["fifeUrl"]
    assert requests.get(stale).status_code == 400
    fresh = media(emulator, item.name).json()[item.shape]["fifeUrl"]
    assert requests.get(fresh).status_code == 200


def test_repeat_items_on_a_later_page(emulator: FlowEmulator) -> None:
    emulator.inject(Fault.repeat_items(3), endpoint="listing")
    first = page(emulator)
    second = page(emulator, first["nextPageToken"])
    assert names(second)[:3] == names(first)[-3:]
    assert len(second["userWorkflows"]) == 18
    third = page(emulator, second["nextPageToken"])
    seen = names(first) + names(second) + names(third)
    assert len(seen) == 45
    assert len(set(seen)) == 42
    assert "nextPageToken" not in third


def test_loop_token_hands_back_a_token_already_sent(emulator: FlowEmulator) -> None:
    emulator.inject(Fault.loop_token())
    first = page(emulator)
    assert "nextPageToken" in first
    second = page(emulator, first["nextPageToken"])
    assert second["nextPageToken"] == first["nextPageToken"]
    again = page(emulator, second["nextPageToken"])
    assert names(again) == names(second)
    assert again["nextPageToken"] != first["nextPageToken"]


def test_listing_and_session_faults(emulator: FlowEmulator) -> None:
    emulator.inject(Fault.status(502), endpoint="listing")
    emulator.inject(Fault.status(500), endpoint="session")
    document = {"json": {"type": "ASSET_MANAGER", "pageSize": 18, "cursor": None}}
    response = requests.get(
        f"{emulator.labs_url}{LISTING}?input={quote(json.dumps(document))}",
        headers={"Cookie": emulator.credentials.cookie},
    )
    assert response.status_code == 502
    assert session(emulator).status_code == 500
    assert session(emulator).status_code == 200


# --- targeting and frequency -------------------------------------------------


def test_name_targets_one_item(emulator: FlowEmulator) -> None:
    one, two = emulator.items[0].name, emulator.items[1].name
    emulator.inject(Fault.status(500), endpoint="media", name=one, times=None)
    assert media(emulator, two).status_code == 200
    assert [media(emulator, one).status_code for _ in range(3)] == [500, 500, 500]


def test_endpoint_none_means_any_endpoint(emulator: FlowEmulator) -> None:
    emulator.inject(Fault.status(503), times=3)
    assert session(emulator).status_code == 503
    assert media(emulator, emulator.items[0].name).status_code == 503
    assert requests.get(emulator.fife_url(emulator.items[0].name)).status_code == 503
    assert session(emulator).status_code == 200


def test_times_remove_and_clear(emulator: FlowEmulator) -> None:
    name = emulator.items[0].name
    twice = emulator.inject(Fault.status(500), endpoint="media", times=2)
    assert [media(emulator, name).status_code for _ in range(3)] == [500, 500, 200]
    assert twice.fired == 2
    always = emulator.inject(Fault.status(500), endpoint="media", times=None)
    assert media(emulator, name).status_code == 500
    always.remove()
    assert media(emulator, name).status_code == 200
    emulator.inject(Fault.status(500), endpoint="media", times=None)
    emulator.inject(Fault.status(502), endpoint="fife", times=None)
    assert len(emulator.faults) == 3
    emulator.clear_faults()
    assert emulator.faults == []
    assert media(emulator, name).status_code == 200


def test_rate_is_deterministic_for_a_seed() -> None:
    def pattern(seed: int) -> list[int]:
        with FlowEmulator(items=2, videos=0, seed=seed) as flow:
            handle = flow.inject(Fault.status(503), endpoint="session", rate=0.5)
            with requests.Session() as s:
                codes = [
                    s.get(
                        flow.labs_url + "/fx/api/auth/session",
                        headers={"Cookie": flow.credentials.cookie},
                    ).status_code
                    for _ in range(40)
                ]
            assert handle.fired == codes.count(503)
            return codes

    first = pattern(7)
    assert first == pattern(7)
    assert 8 <= first.count(503) <= 32


def test_bad_injections_are_refused(emulator: FlowEmulator) -> None:
    with pytest.raises(ValueError):
        emulator.inject(Fault.json_200(), endpoint="media")
    with pytest.raises(ValueError):
        emulator.inject(Fault.short_length(), endpoint="listing")
    with pytest.raises(ValueError):
        emulator.inject(Fault.status(500), endpoint="listing", name="CAMa")
    with pytest.raises(ValueError):
        emulator.inject(Fault.repeat_items(), name="CAMa")
    with pytest.raises(ValueError):
        emulator.inject(Fault.status(500), endpoint="bogus")
    with pytest.raises(ValueError):
        emulator.inject(Fault.status(500), times=0)
    with pytest.raises(ValueError):
        emulator.inject(Fault.status(500), rate=1.5)
    with pytest.raises(ValueError):
        Fault.status(200)
    with pytest.raises(ValueError):
        Fault.drip(delay=-1)
