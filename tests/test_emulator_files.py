"""FlowEmulator's files role: signed URLs, ranges, and big files in bounded memory."""

from __future__ import annotations

import http.client
import threading
import time
from collections.abc import Iterator
from urllib.parse import unquote, urlsplit

import psutil
import pytest
import requests

from veo3dl.testing import FlowEmulator


@pytest.fixture
def clock() -> list[float]:
    return [1_800_000_000.0]


@pytest.fixture
def emulator(clock: list[float]) -> Iterator[FlowEmulator]:
    with FlowEmulator(items=12, videos=2, clock=lambda: clock[0]) as flow:
        yield flow
        assert flow.errors == []


def raw_get(
    url: str, target: str | None = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    """GET with http.client, sending *target* byte for byte (no re-encoding)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        conn.request("GET", target or f"{parts.path}?{parts.query}", headers=headers or {})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def test_signed_url_serves_the_file(emulator: FlowEmulator) -> None:
    for item in emulator.items[:6]:
        url = emulator.fife_url(item.name)
        assert "GoogleAccessId=labs-ai-sandbox-videoserver-prod@system.gserviceaccount.com" in url
        assert "%3D" in url.rsplit("Signature=", 1)[1]
        response = requests.get(url)
        assert response.status_code == 200
        assert response.content == emulator.content(item.name)
        assert response.headers["Content-Type"] == item.mime_type
        assert int(response.headers["Content-Length"]) == item.size
        assert response.headers["Accept-Ranges"] == "bytes"
        assert response.headers["ETag"].startswith('"')
        kind = "video" if item.media_type == "VIDEO" else "image"
        assert f"/ai-sandbox-videofx/{kind}/{item.media_key}?" in url
    assert emulator.requests("fife") == 6
    assert emulator.requests("fife", emulator.items[0].name) == 1


def test_signature_holds_plus_and_slash(emulator: FlowEmulator) -> None:
    signatures = [
        emulator.fife_url(item.name).rsplit("Signature=", 1)[1] for item in emulator.items
    ]
    assert all(s.endswith("%3D%3D") for s in signatures)
    # 342 random base64 characters: "+" and "/" are missing only by rare chance.
    assert sum("%2B" in s and "%2F" in s for s in signatures) >= len(signatures) // 2


@pytest.mark.parametrize(
    "mangle",
    [
        unquote,  # decoded
        lambda sig: sig.replace("%2B", "+"),  # '+' as a form would
        lambda sig: sig.replace("%2B", "%2b").replace("%2F", "%2f").replace("%3D", "%3d"),
        lambda sig: sig.replace("%", "%25"),  # encoded twice
        lambda sig: sig[:-6],  # cut
    ],
)
def test_reencoded_signature_is_refused(emulator: FlowEmulator, mangle) -> None:  # type: ignore[no-untyped-def]
    url = emulator.fife_url(emulator.items[0].name)
    head, signature = url.rsplit("Signature=", 1)
    target = urlsplit(head).path + "?" + urlsplit(head).query + "Signature=" + mangle(signature)
    status, headers, body = raw_get(url, target)
    assert status == 403
    assert headers["Content-Type"].startswith("application/xml")
    assert body.startswith(
        b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>SignatureDoesNotMatch</Code>"
    )


def test_requests_params_reencoding_breaks_the_signature(emulator: FlowEmulator) -> None:
    url = emulator.fife_url(emulator.items[0].name)
    base, query = url.split("?", 1)
    params = dict(pair.split("=", 1) for pair in query.split("&"))
    # Passing the already-encoded values as params encodes them again.
    assert requests.get(base, params=params).status_code == 403
    decoded = {key: unquote(value) for key, value in params.items()}
    # Re-encoding that reproduces the very same bytes (upper-case escapes) is fine.
    assert requests.get(base, params=decoded).status_code == 200
    assert requests.get(url).status_code == 200


def test_other_path_or_expiry_tampering_is_refused(emulator: FlowEmulator) -> None:
    one, two = emulator.items[0], emulator.items[1]
    url = emulator.fife_url(one.name)
    assert requests.get(url.replace(one.media_key, two.media_key)).status_code == 403
    expires = url.split("Expires=")[1].split("&")[0]
    assert requests.get(url.replace(expires, str(int(expires) + 10))).status_code == 403
    assert requests.get(url.split("?")[0]).status_code == 403


def test_expired_url_is_400_expired_token(emulator: FlowEmulator, clock: list[float]) -> None:
    url = emulator.fife_url(emulator.items[0].name)
    clock[0] += 6 * 3600 + 1
    response = requests.get(url)
    assert response.status_code == 400
    assert b"<Code>ExpiredToken</Code>" in response.content
    assert response.headers["Content-Type"].startswith("application/xml")


def test_ranges_and_if_range(emulator: FlowEmulator) -> None:
    item = emulator.items[0]
    data = emulator.content(item.name)
    url = emulator.fife_url(item.name)
    etag = requests.get(url).headers["ETag"]
    for header, expected in [
        ("bytes=100-", data[100:]),
        ("bytes=0-0", data[:1]),
        ("bytes=10-99", data[10:100]),
        ("bytes=-50", data[-50:]),
        (f"bytes=5-{item.size + 100}", data[5:]),
    ]:
        response = requests.get(url, headers={"Range": header})
        assert response.status_code == 206, header
        assert response.content == expected
        first = item.size - len(expected)
        if header.startswith("bytes=") and not header.startswith("bytes=-"):
            first = int(header[6:].split("-")[0])
        last = first + len(expected) - 1
        assert response.headers["Content-Range"] == f"bytes {first}-{last}/{item.size}"
        assert response.headers["ETag"] == etag
    matched = requests.get(url, headers={"Range": "bytes=1000-", "If-Range": etag})
    assert matched.status_code == 206
    assert matched.content == data[1000:]
    stale = requests.get(url, headers={"Range": "bytes=1000-", "If-Range": '"other"'})
    assert stale.status_code == 200
    assert stale.content == data
    beyond = requests.get(url, headers={"Range": f"bytes={item.size}-"})
    assert beyond.status_code == 416
    assert beyond.headers["Content-Range"] == f"bytes */{item.size}"
    ignored = requests.get(url, headers={"Range": "bytes=0-1,5-9"})
    assert ignored.status_code == 200
    assert ignored.content == data


def test_head_gives_headers_only(emulator: FlowEmulator) -> None:
    item = emulator.items[0]
    response = requests.head(emulator.fife_url(item.name))
    assert response.status_code == 200
    assert int(response.headers["Content-Length"]) == item.size
    assert response.content == b""


def test_video_still_and_unknown_or_removed_keys(emulator: FlowEmulator) -> None:
    video = next(item for item in emulator.items if item.media_type == "VIDEO")
    image = next(item for item in emulator.items if item.media_type == "IMAGE")
    answer = requests.get(
        f"{emulator.api_url}/v1/media/{video.name}?key={emulator.credentials.api_key}",
        headers={"Authorization": f"Bearer {emulator.credentials.bearer_token}"},
    ).json()
    still = requests.get(answer["video"]["servingBaseUri"])
    assert still.status_code == 200
    assert still.content.startswith(b"\x89PNG")
    url = emulator.fife_url(image.name)
    emulator.remove_items([image.name])
    gone = requests.get(url)
    assert gone.status_code == 404
    assert b"<Code>NoSuchKey</Code>" in gone.content
    assert requests.get(emulator.files_url + "/elsewhere").status_code == 404


def test_200_mb_video_streams_in_bounded_memory() -> None:
    size = 200 * 1024 * 1024
    with FlowEmulator(items=1, videos=1, video_bytes=(size, size)) as flow:
        item = flow.items[0]
        url = flow.fife_url(item.name)
        started = time.perf_counter()
        head = requests.get(url, headers={"Range": "bytes=0-1048575"})
        tail = requests.get(url, headers={"Range": f"bytes={size - 1048576}-"})
        assert time.perf_counter() - started < 2.0
        assert head.content[4:8] == b"ftyp"
        assert len(tail.content) == 1048576
        assert tail.content == flow.blob(item.name).read(size - 1048576, 1048576)

        process = psutil.Process()
        baseline = process.memory_info().rss
        peak = [baseline]
        done = threading.Event()

        def sample() -> None:
            while not done.wait(0.005):
                peak[0] = max(peak[0], process.memory_info().rss)

        sampler = threading.Thread(target=sample)
        sampler.start()
        try:
            total = 0
            with requests.get(url, stream=True) as response:
                assert int(response.headers["Content-Length"]) == size
                for chunk in response.iter_content(1024 * 1024):
                    total += len(chunk)
        finally:
            done.set()
            sampler.join()
        assert total == size
        assert peak[0] - baseline < 64 * 1024 * 1024
        assert flow.errors == []
