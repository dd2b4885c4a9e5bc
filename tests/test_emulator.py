"""FlowEmulator over HTTP: session, listing, media by name, counters, keep-alive, lifecycle."""

from __future__ import annotations

import base64
import http.client
import json
import socket
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote

import pytest
import requests

from veo3dl.testing import Fault, FlowEmulator

LISTING = "/fx/api/trpc/media.fetchUserHistoryDirectly"
FIRST_META = {"values": {"cursor": ["undefined"]}}
COOKIE = "__Secure-next-auth.session-token"


@pytest.fixture
def emulator() -> Iterator[FlowEmulator]:
    with FlowEmulator() as flow:
        yield flow
        assert flow.errors == []


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with requests.Session() as s:
        yield s


def listing_url(
    flow: FlowEmulator, cursor: str | None = None, *, meta: bool | None = None, size: Any = 18
) -> str:
    document: dict[str, Any] = {
        "json": {
            "type": "ASSET_MANAGER",
            "pageSize": size,
            "responseScope": "RESPONSE_SCOPE_UNSPECIFIED",
            "cursor": cursor,
        }
    }
    if meta if meta is not None else cursor is None:
        document["meta"] = FIRST_META
    return f"{flow.labs_url}{LISTING}?input={quote(json.dumps(document))}"


def listing(
    s: requests.Session, flow: FlowEmulator, cursor: str | None = None, **kw: Any
) -> dict[str, Any]:
    response = s.get(
        listing_url(flow, cursor, **kw),
        headers={"Cookie": flow.credentials.cookie, "content-type": "application/json"},
    )
    assert response.status_code == 200, response.text
    body = response.json()["result"]["data"]["json"]
    assert body["status"] == 200
    assert body["statusText"] == "OK"
    return body["result"]  # type: ignore[no-any-return]


def list_all(s: requests.Session, flow: FlowEmulator) -> list[dict[str, Any]]:
    pages, cursor = [], None
    while True:
        result = listing(s, flow, cursor)
        pages.append(result["userWorkflows"])
        cursor = result.get("nextPageToken")
        if cursor is None:
            return [item for page in pages for item in page]


def media_url(flow: FlowEmulator, name: str, key: str | None = None) -> str:
    key = flow.credentials.api_key if key is None else key
    return f"{flow.api_url}/v1/media/{name}?key={key}&clientContext.tool=PINHOLE"


def bearer(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def get_media(s: requests.Session, flow: FlowEmulator, name: str) -> requests.Response:
    return s.get(media_url(flow, name), headers=bearer(flow.credentials.bearer_token))


def file_of(answer: dict[str, Any]) -> bytes:
    for shape, field in (
        ("userUploadedImage", "image"),
        ("image", "encodedImage"),
        ("video", "encodedVideo"),
    ):
        if shape in answer:
            return base64.b64decode(answer[shape][field], validate=True)
    raise AssertionError(answer)


# --- session ---------------------------------------------------------------


def test_session_mints_fresh_tokens(emulator: FlowEmulator, session: requests.Session) -> None:
    url = emulator.labs_url + "/fx/api/auth/session"
    first = session.get(url, headers={"Cookie": emulator.credentials.cookie}).json()
    second = session.get(url, headers={"Cookie": emulator.credentials.cookie}).json()
    assert first["access_token"].startswith("ya29.")
    assert first["access_token"] != second["access_token"]
    assert set(first["user"]) == {"name", "email", "image"}
    expires = datetime.strptime(first["expires"], "%Y-%m-%dT%H:%M:%S.%f%z")
    left = (expires - datetime.now(timezone.utc)).total_seconds()
    assert 3500 < left <= 3600
    assert (
        session.get(
            media_url(emulator, emulator.items[0].name), headers=bearer(second["access_token"])
        ).status_code
        == 200
    )


def test_session_without_cookie_is_401_and_stale_cookie_says_so(
    emulator: FlowEmulator, session: requests.Session
) -> None:
    url = emulator.labs_url + "/fx/api/auth/session"
    assert session.get(url).status_code == 401
    wrong = session.get(url, headers={"Cookie": "__Secure-next-auth.session-token=nope"})
    assert wrong.status_code == 200
    assert wrong.json() == {"error": "ACCESS_TOKEN_REFRESH_NEEDED"}
    emulator.stale_cookie = True
    stale = session.get(url, headers={"Cookie": emulator.credentials.cookie})
    assert stale.status_code == 200
    assert stale.json() == {"error": "ACCESS_TOKEN_REFRESH_NEEDED"}
    refused = session.get(listing_url(emulator), headers={"Cookie": emulator.credentials.cookie})
    assert refused.status_code == 401
    assert refused.json()["error"]["status"] == "UNAUTHENTICATED"
    emulator.stale_cookie = False
    assert (
        "access_token" in session.get(url, headers={"Cookie": emulator.credentials.cookie}).json()
    )


# --- listing -----------------------------------------------------------------


def test_listing_arrives_as_18_18_6(emulator: FlowEmulator, session: requests.Session) -> None:
    sizes, cursor, tokens = [], None, []
    while True:
        result = listing(session, emulator, cursor)
        sizes.append(len(result["userWorkflows"]))
        if "nextPageToken" not in result:
            break
        cursor = result["nextPageToken"]
        assert isinstance(cursor, str)
        assert cursor
        tokens.append(cursor)
    assert sizes == [18, 18, 6]
    assert len(set(tokens)) == 2
    assert emulator.requests("listing") == 3


def test_listing_items_match_the_library(emulator: FlowEmulator, session: requests.Session) -> None:
    listed = list_all(session, emulator)
    expected = emulator.items
    assert [item["name"].replace("\r\n", "").strip() for item in listed] == [
        item.name for item in expected
    ]
    assert any(item["name"] != item["name"].strip() for item in listed)
    assert any("\n" in item["name"].strip() for item in listed)
    with_fife = 0
    for raw, item in zip(listed, expected, strict=True):
        media = raw["media"]
        assert raw["createTime"] == item.create_time.strftime("%Y-%m-%dT%H:%M:%SZ")
        assert media["mediaGenerationId"]["mediaType"] == item.media_type
        assert media["mediaGenerationId"]["mediaKey"] == item.media_key
        assert media["mediaGenerationId"]["workflowId"] == item.workflow_id
        assert media["mediaGenerationId"].get("projectId") == item.project_id
        assert item.shape in media
        assert media[item.shape]["aspectRatio"] == item.aspect_ratio
        if "fifeUrl" in media[item.shape]:
            with_fife += 1
            assert media[item.shape]["fifeUrl"].startswith(emulator.files_url + "/ai-sandbox")
    assert 30 <= with_fife < 42  # usually, not always


def test_meta_with_cursor_returns_page_one(
    emulator: FlowEmulator, session: requests.Session
) -> None:
    first = listing(session, emulator)
    again = listing(session, emulator, first["nextPageToken"], meta=True)
    assert [i["name"] for i in again["userWorkflows"]] == [
        i["name"] for i in first["userWorkflows"]
    ]
    assert again["nextPageToken"] == first["nextPageToken"]


def test_meta_quirk_can_be_switched_off(session: requests.Session) -> None:
    with FlowEmulator(meta_cursor_quirk=False) as flow:
        first = listing(session, flow)
        second = listing(session, flow, first["nextPageToken"], meta=True)
        assert second["userWorkflows"][0]["name"] != first["userWorkflows"][0]["name"]


def test_page_size_is_capped_and_honoured(session: requests.Session) -> None:
    with FlowEmulator(items=42, page_cap=10) as flow:
        assert len(listing(session, flow, size=18)["userWorkflows"]) == 10
        assert len(listing(session, flow, size=4)["userWorkflows"]) == 4


def test_empty_library_lists_nothing(session: requests.Session) -> None:
    with FlowEmulator(items=0, videos=0) as flow:
        assert listing(session, flow) == {"userWorkflows": []}


@pytest.mark.parametrize(
    "query",
    [
        "",
        "input=not-json",
        "input=" + quote(json.dumps({"json": {"type": "OTHER", "pageSize": 18, "cursor": None}})),
        "input=" + quote(json.dumps({"json": {"type": "ASSET_MANAGER", "pageSize": "18"}})),
        "input=" + quote(json.dumps({"json": {"type": "ASSET_MANAGER", "pageSize": 0}})),
        "input="
        + quote(json.dumps({"json": {"type": "ASSET_MANAGER", "pageSize": 18, "cursor": 5}})),
        "input="
        + quote(
            json.dumps({"json": {"type": "ASSET_MANAGER", "pageSize": 18, "cursor": "garbled"}})
        ),
        "input=" + quote(json.dumps([1, 2])),
    ],
)
def test_bad_listing_input_is_400(
    emulator: FlowEmulator, session: requests.Session, query: str
) -> None:
    response = session.get(
        f"{emulator.labs_url}{LISTING}?{query}", headers={"Cookie": emulator.credentials.cookie}
    )
    assert response.status_code == 400
    assert response.json()["error"]["status"] == "INVALID_ARGUMENT"


def test_tampered_cursor_is_400(emulator: FlowEmulator, session: requests.Session) -> None:
    token = listing(session, emulator)["nextPageToken"]
    tampered = token[:-2] + ("AA" if token[-2:] != "AA" else "BB")
    response = session.get(
        listing_url(emulator, tampered), headers={"Cookie": emulator.credentials.cookie}
    )
    assert response.status_code == 400


def test_listing_needs_the_cookie(emulator: FlowEmulator, session: requests.Session) -> None:
    assert session.get(listing_url(emulator)).status_code == 401
    wrong = {"Cookie": "__Secure-next-auth.session-token=wrong"}
    assert session.get(listing_url(emulator), headers=wrong).status_code == 401


def test_cursor_is_time_ordered_while_the_library_changes(
    emulator: FlowEmulator, session: requests.Session
) -> None:
    first = listing(session, emulator)
    added = emulator.add_items(2)
    gone = emulator.items[20].name  # on the second page
    emulator.remove_items([gone])
    rest = [
        item["name"].strip()
        for item in listing(session, emulator, first["nextPageToken"])["userWorkflows"]
    ]
    assert gone not in rest
    assert not {a.name for a in added} & set(rest)
    names = [item["name"].replace("\r\n", "").strip() for item in list_all(session, emulator)]
    assert names[:2] == [added[1].name, added[0].name]
    assert len(names) == 43


# --- media by name ---------------------------------------------------------


def test_media_answers_every_shape(emulator: FlowEmulator, session: requests.Session) -> None:
    shapes = set()
    for item in emulator.items[:14]:
        response = get_media(session, emulator, item.name)
        assert response.status_code == 200
        assert response.headers["Content-Type"].startswith("application/json")
        answer = response.json()
        assert answer["name"] == item.name
        assert answer["mediaGenerationId"]["mediaKey"] == item.media_key
        assert file_of(answer) == emulator.content(item.name)
        inner = answer[item.shape]
        shapes.add(item.shape)
        assert inner["fifeUrl"].startswith(emulator.files_url)
        if item.shape == "image":
            assert inner["seed"] == item.seed
            assert inner["prompt"] == item.prompt
            assert inner["modelNameType"] == item.model
        if item.shape == "userUploadedImage":
            assert inner["mediaGenerationId"] == item.name
        if item.shape == "video":
            assert inner["model"] == item.model
            assert "/video/" in inner["fifeUrl"]
            assert "/image/" in inner["servingBaseUri"]
            assert answer["mediaGenerationId"]["projectId"] == item.project_id
    assert shapes == {"userUploadedImage", "image", "video"}


def test_each_media_answer_has_a_fresh_fife_url(session: requests.Session) -> None:
    now = [1_800_000_000.0]
    with FlowEmulator(items=3, videos=0, clock=lambda: now[0]) as flow:
        name = flow.items[0].name
        first = get_media(session, flow, name).json()
        now[0] += 5
        second = get_media(session, flow, name).json()
        shape = flow.items[0].shape
        assert first[shape]["fifeUrl"] != second[shape]["fifeUrl"]


def test_dollar_raw_works_but_escaped_is_400(
    emulator: FlowEmulator, session: requests.Session
) -> None:
    item = next(item for item in emulator.items if "$" in item.name)
    assert get_media(session, emulator, item.name).status_code == 200
    escaped = get_media(session, emulator, item.name.replace("$", "%24"))
    assert escaped.status_code == 400
    assert escaped.json()["error"]["status"] == "INVALID_ARGUMENT"
    plain = next(item for item in emulator.items if "$" not in item.name)
    # Other escapes are decoded: an escaped letter still names the item.
    assert get_media(session, emulator, "%43" + plain.name[1:]).status_code == 200
    assert emulator.requests("media", item.name) == 2


def test_media_key_and_bearer_checks(emulator: FlowEmulator, session: requests.Session) -> None:
    name = emulator.items[0].name
    token = emulator.credentials.bearer_token
    no_key = session.get(f"{emulator.api_url}/v1/media/{name}", headers=bearer(token))
    assert no_key.status_code == 400
    assert no_key.json()["error"]["status"] == "INVALID_ARGUMENT"
    assert (
        session.get(media_url(emulator, name, key="AIzaWrong"), headers=bearer(token)).status_code
        == 400
    )
    assert session.get(media_url(emulator, name)).status_code == 401
    unknown = session.get(media_url(emulator, name), headers=bearer("ya29.unknown"))
    assert unknown.status_code == 401
    assert unknown.json()["error"]["status"] == "UNAUTHENTICATED"
    missing = session.get(media_url(emulator, "CAMaNoSuchItem"), headers=bearer(token))
    assert missing.status_code == 404
    assert missing.json()["error"]["status"] == "NOT_FOUND"


def test_expire_tokens(emulator: FlowEmulator, session: requests.Session) -> None:
    name = emulator.items[0].name
    assert get_media(session, emulator, name).status_code == 200
    emulator.expire_tokens()
    assert get_media(session, emulator, name).status_code == 401
    fresh = emulator.mint_token()
    assert session.get(media_url(emulator, name), headers=bearer(fresh)).status_code == 200


def test_token_calls_limits_each_token(session: requests.Session) -> None:
    with FlowEmulator(items=2, videos=0, token_calls=3) as flow:
        name = flow.items[0].name
        assert [get_media(session, flow, name).status_code for _ in range(4)] == [
            200,
            200,
            200,
            401,
        ]
        cookie = {"Cookie": flow.credentials.cookie}
        token = session.get(flow.labs_url + "/fx/api/auth/session", headers=cookie).json()[
            "access_token"
        ]
        assert session.get(media_url(flow, name), headers=bearer(token)).status_code == 200


def test_token_lifetime_follows_the_clock(session: requests.Session) -> None:
    now = [1_800_000_000.0]
    with FlowEmulator(items=1, videos=0, token_lifetime=60, clock=lambda: now[0]) as flow:
        name = flow.items[0].name
        assert get_media(session, flow, name).status_code == 200
        now[0] += 61
        assert get_media(session, flow, name).status_code == 401


def test_big_video_streams_as_base64_json(session: requests.Session) -> None:
    with FlowEmulator(items=1, videos=1, video_bytes=(3_000_001, 3_000_001)) as flow:
        item = flow.items[0]
        response = get_media(session, flow, item.name)
        assert int(response.headers["Content-Length"]) == len(response.content)
        assert file_of(response.json()) == flow.content(item.name)


# --- counters, keep-alive, lifecycle ---------------------------------------


def test_counters_by_endpoint_and_item(emulator: FlowEmulator, session: requests.Session) -> None:
    one, two = emulator.items[0].name, emulator.items[1].name
    get_media(session, emulator, one)
    get_media(session, emulator, one)
    get_media(session, emulator, two)
    listing(session, emulator)
    session.get(emulator.labs_url + "/nowhere")
    assert emulator.requests("media", one) == 2
    assert emulator.requests(name=two) == 1
    assert emulator.requests("media") == 3
    assert emulator.requests("listing") == 1
    assert emulator.requests("fife") == 0
    assert emulator.requests("other") == 1
    assert emulator.requests() == 5
    with pytest.raises(ValueError):
        emulator.requests("bogus")
    emulator.reset_counters()
    assert emulator.requests() == 0


def test_keep_alive_is_fast(emulator: FlowEmulator, session: requests.Session) -> None:
    url = emulator.labs_url + "/fx/api/auth/session"
    headers = {"Cookie": emulator.credentials.cookie}
    session.get(url, headers=headers)
    before = emulator.connections()
    started = time.perf_counter()
    for _ in range(300):
        assert session.get(url, headers=headers).status_code == 200
    elapsed = time.perf_counter() - started
    assert elapsed < 5.0, elapsed
    assert emulator.connections() == before  # one connection, reused


def test_http_1_1_framing_on_raw_socket(emulator: FlowEmulator) -> None:
    port = int(emulator.labs_url.rsplit(":", 1)[1])
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        for _ in range(3):
            conn.request(
                "GET", "/fx/api/auth/session", headers={"Cookie": emulator.credentials.cookie}
            )
            response = conn.getresponse()
            body = response.read()
            assert response.version == 11
            assert int(response.getheader("Content-Length")) == len(body)
        conn.request(
            "HEAD", "/fx/api/auth/session", headers={"Cookie": emulator.credentials.cookie}
        )
        head = conn.getresponse()
        assert head.read() == b""
        assert int(head.getheader("Content-Length")) > 0
        conn.request("POST", "/fx/api/auth/session", body=b"{}")
        assert conn.getresponse().status == 405
    finally:
        conn.close()


def test_stop_does_not_hang_on_open_or_stalled_connections() -> None:
    flow = FlowEmulator(items=2, videos=1, video_bytes=(50_000_000, 50_000_000)).start()
    sockets: list[socket.socket] = []
    threads: list[threading.Thread] = []
    try:
        labs_port = int(flow.labs_url.rsplit(":", 1)[1])
        sockets.append(socket.create_connection(("127.0.0.1", labs_port)))  # idle keep-alive
        video = next(item for item in flow.items if item.media_type == "VIDEO")
        target = flow.fife_url(video.name).split(flow.files_url, 1)[1]
        files_port = int(flow.files_url.rsplit(":", 1)[1])
        unread = socket.create_connection(("127.0.0.1", files_port))
        unread.sendall(f"GET {target} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        sockets.append(unread)  # a 50 MB answer nobody reads: the server blocks sending
        flow.inject(Fault.drip(delay=30, chunk=10), endpoint="session")
        flow.inject(Fault.latency(30), endpoint="listing")
        results: list[Any] = []

        def call(url: str) -> None:
            try:
                cookie = {"Cookie": flow.credentials.cookie}
                results.append(requests.get(url, headers=cookie, timeout=20))
            except requests.RequestException as exc:
                results.append(exc)

        for url in (flow.labs_url + "/fx/api/auth/session", listing_url(flow)):
            threads.append(threading.Thread(target=call, args=(url,)))
            threads[-1].start()
        deadline = time.monotonic() + 5
        while flow.requests() < 3 and time.monotonic() < deadline:
            threading.Event().wait(0.01)
        assert flow.requests() == 3
        started = time.perf_counter()
        flow.stop()
        assert time.perf_counter() - started < 3
        for thread in threads:
            thread.join(10)
            assert not thread.is_alive()
        assert len(results) == 2
        flow.stop()  # a second stop is harmless
    finally:
        flow.stop()
        for sock in sockets:
            sock.close()


def test_hostile_requests_get_answers_not_server_errors(
    emulator: FlowEmulator, session: requests.Session
) -> None:
    """Non-ASCII secrets and an unframeable body are the client's fault: 4xx, never a 500."""
    port = int(emulator.labs_url.rsplit(":", 1)[1])
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:  # http.client sends header values as Latin-1, as a browser might
        conn.request("GET", "/fx/api/auth/session", headers={"Cookie": f"{COOKIE}=caf\xe9"})
        stale = conn.getresponse()
        assert stale.status == 200
        assert json.loads(stale.read())["error"] == "ACCESS_TOKEN_REFRESH_NEEDED"
    finally:
        conn.close()
    name = emulator.items[0].name
    token = emulator.credentials.bearer_token
    wrong_key = session.get(
        f"{emulator.api_url}/v1/media/{name}?key=%C3%A9t%C3%A9", headers=bearer(token)
    )
    assert wrong_key.status_code == 400
    api_port = int(emulator.api_url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", api_port), timeout=5) as raw:
        raw.sendall(b"POST /v1/media/x HTTP/1.1\r\nHost: x\r\nContent-Length: lots\r\n\r\n")
        assert raw.recv(64).startswith(b"HTTP/1.1 4")
    assert emulator.errors == []


def test_requests_without_the_web_apps_headers_are_noted(
    emulator: FlowEmulator, session: requests.Session
) -> None:
    name = emulator.items[0].name
    token = emulator.credentials.bearer_token
    plain = f"{emulator.api_url}/v1/media/{name}?key={emulator.credentials.api_key}"
    assert session.get(plain, headers=bearer(token)).status_code == 200
    bare = session.get(listing_url(emulator), headers={"Cookie": emulator.credentials.cookie})
    assert bare.status_code == 200
    assert sorted(emulator.deviations) == [
        "listing: no content-type: application/json header",
        "media: no clientContext.tool=PINHOLE in the query",
        "media: no origin: https://labs.google header",
        "media: no referer: https://labs.google/ header",
    ]
