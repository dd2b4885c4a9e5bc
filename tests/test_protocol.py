"""Pure protocol code: request building, payload parsing, and fuzzing the parsers."""

from __future__ import annotations

import base64
import json
import string
from datetime import datetime, timezone
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from veo3dl import LoginRequired, ProtocolError
from veo3dl import _protocol as proto
from veo3dl._payload_stream import PayloadExtractor

PCHAR = set(string.ascii_letters + string.digits + "-._~!$&'()*+,;=:@")

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children, max_size=6)
    ),
    max_leaves=30,
)


def listing_payload(workflows: list, token: str | None = None) -> dict:
    result: dict = {"userWorkflows": workflows}
    if token is not None:
        result["nextPageToken"] = token
    return {"result": {"data": {"json": {"result": result, "status": 200, "statusText": "OK"}}}}


def workflow(name: str = "CAMa1", media_type: str = "IMAGE", **media_extra) -> dict:
    return {
        "name": name,
        "media": {
            "name": name,
            "image": {
                "aspectRatio": "IMAGE_ASPECT_RATIO_PORTRAIT",
                "fifeUrl": "https://storage.googleapis.com/a?Expires=1&Signature=x%2B",
            },
            "mediaGenerationId": {"mediaType": media_type, "workflowId": "w", "mediaKey": "k-1"},
            **media_extra,
        },
        "createTime": "2025-10-29T13:56:15Z",
    }


# ----------------------------------------------------------------- listing


def test_first_page_sends_meta_and_later_pages_do_not() -> None:
    first = json.loads(proto.listing_input(None, 18))
    later = json.loads(proto.listing_input("tok", 18))
    assert first["meta"] == {"values": {"cursor": ["undefined"]}}
    assert first["json"] == {
        "type": "ASSET_MANAGER",
        "pageSize": 18,
        "responseScope": "RESPONSE_SCOPE_UNSPECIFIED",
        "cursor": None,
    }
    assert "meta" not in later and later["json"]["cursor"] == "tok"


def test_listing_url_encodes_the_input() -> None:
    url = proto.listing_url("https://labs.google", "a b&c", 18)
    parts = urlsplit(url)
    assert parts.path == "/fx/api/trpc/media.fetchUserHistoryDirectly"
    assert json.loads(parse_qs(parts.query)["input"][0])["json"]["cursor"] == "a b&c"


def test_parse_listing_strips_whitespace_and_skips_malformed() -> None:
    payload = listing_payload(
        [
            workflow(" CAMa\n1 "),
            {"name": "broken"},
            workflow("CAMa2", media_type="SOUND"),
            7,
            workflow("CAUS3", "VIDEO"),
        ],
        token="next",
    )
    page = proto.parse_listing(payload)
    assert [i.name for i in page.items] == ["CAMa1", "CAUS3"]
    assert page.skipped == 3
    assert page.next_token == "next"
    item = page.items[0]
    assert item.create_time == datetime(2025, 10, 29, 13, 56, 15, tzinfo=timezone.utc)
    assert item.fife_url is not None and "Signature=[REDACTED]" in repr(item)


def test_missing_token_means_last_page() -> None:
    assert proto.parse_listing(listing_payload([workflow()])).next_token is None
    assert proto.parse_listing(listing_payload([workflow()], token="")).next_token is None
    for odd in (7, 0, False, [], {}):  # falsy or not, only null and "" mean "no more pages"
        with pytest.raises(ProtocolError, match="nextPageToken"):
            proto.parse_listing(listing_payload([workflow()], token=odd))  # type: ignore[arg-type]


@pytest.mark.parametrize("status", [500, "500", None])
def test_a_failure_status_inside_the_envelope_is_a_protocol_error(status) -> None:
    payload = listing_payload([workflow()], token="next")
    envelope = payload["result"]["data"]["json"]
    envelope["status"], envelope["statusText"] = status, "Internal"
    if status is None:
        del envelope["status"]
        assert proto.parse_listing(payload).next_token == "next"
    else:
        with pytest.raises(ProtocolError, match="status 500"):
            proto.parse_listing(payload)


@pytest.mark.parametrize(
    "created",
    ["0001-01-01T00:30:00+01:00", "9999-12-31T23:59:59-01:00", "2025-13-01T00:00:00Z", "now"],
)
def test_times_out_of_range_are_skipped_items_not_crashes(created: str) -> None:
    entry = workflow("CAMa9")
    entry["createTime"] = created
    page = proto.parse_listing(listing_payload([entry, workflow("CAMa1")]))
    assert [i.name for i in page.items] == ["CAMa1"] and page.skipped == 1
    with pytest.raises(ProtocolError):
        proto.parse_session({"access_token": "t", "expires": created})


@given(st.text(max_size=40) | st.datetimes().map(lambda d: d.isoformat()), st.text(max_size=8))
@settings(max_examples=300, deadline=None)
def test_fuzz_time_parser_raises_only_protocol_error(text: str, suffix: str) -> None:
    for candidate in (text, text + suffix, text + "Z", text + "+14:00", text + "-23:59"):
        try:
            parsed = proto.parse_time(candidate, "t")
        except ProtocolError:
            continue
        assert parsed.tzinfo is timezone.utc


def test_deeply_nested_json_is_handled() -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    assert proto.parse_google_error(deep).status is None
    extractor = PayloadExtractor(lambda _: None, where="t")
    extractor.feed(deep)
    with pytest.raises(ProtocolError, match="nested"):
        extractor.finish()


@pytest.mark.parametrize(
    "payload",
    [{}, {"result": {}}, [], "x", {"result": {"data": {"json": {"result": {"userWorkflows": 5}}}}}],
)
def test_bad_envelope_is_protocol_error(payload) -> None:
    with pytest.raises(ProtocolError):
        proto.parse_listing(payload)


@given(json_values)
@settings(max_examples=300, deadline=None)
def test_fuzz_listing_parser_raises_only_protocol_error(payload) -> None:
    for candidate in (
        payload,
        listing_payload([payload]),
        listing_payload([payload, workflow()], token=payload),
    ):
        try:
            proto.parse_listing(candidate)
        except ProtocolError:
            pass


@given(json_values)
@settings(max_examples=300, deadline=None)
def test_fuzz_media_and_session_parsers(payload) -> None:
    for candidate in (payload, {"image": payload}, {"video": {"encodedVideo": payload}}):
        try:
            proto.parse_media_payload(candidate, name="x")
        except ProtocolError:
            pass
    try:
        proto.parse_session(payload)
    except (ProtocolError, LoginRequired):
        pass
    proto.parse_google_error(json.dumps(payload).encode())


# -------------------------------------------------------------- media URLs


@given(st.text(min_size=1, max_size=80))
@settings(max_examples=500, deadline=None)
def test_quote_name_keeps_pchar_raw_and_round_trips(name: str) -> None:
    quoted = proto.quote_name(name)
    assert unquote(quoted, errors="strict") == name
    for char in name:
        if char in PCHAR:
            assert char in quoted
    for i, char in enumerate(quoted):
        assert char in PCHAR or char == "%", repr(quoted)
        if char == "%":
            assert all(c in string.hexdigits for c in quoted[i + 1 : i + 3])
    assert "/" not in quoted and "?" not in quoted and "#" not in quoted and " " not in quoted


def test_dollar_goes_raw_and_only_unsafe_characters_are_escaped() -> None:
    assert proto.quote_name("CAMa$a-b_c~") == "CAMa$a-b_c~"
    assert proto.quote_name("a/b?c#d%e f\n") == "a%2Fb%3Fc%23d%25e%20f%0A"


def test_media_url_and_headers() -> None:
    url = proto.media_url("https://aisandbox-pa.googleapis.com", "CAMa$1", "AIzaKEY")
    assert (
        url
        == "https://aisandbox-pa.googleapis.com/v1/media/CAMa$1?key=AIzaKEY&clientContext.tool=PINHOLE"
    )
    headers = proto.api_headers("ya29.tok")
    assert headers["Authorization"] == "Bearer ya29.tok"
    assert (
        headers["origin"] == "https://labs.google" and headers["referer"] == "https://labs.google/"
    )


@pytest.mark.parametrize(
    ("payload", "shape"),
    [
        (
            {"userUploadedImage": {"image": "QUJD", "fifeUrl": "https://x/y"}},
            "userUploadedImage.image",
        ),
        (
            {
                "image": {
                    "encodedImage": "QUJD",
                    "seed": 5,
                    "prompt": "p",
                    "modelNameType": "IMAGEN_3_5",
                }
            },
            "image.encodedImage",
        ),
        (
            {
                "video": {"encodedVideo": "QUJD", "seed": 1, "model": "veo_3"},
                "mediaGenerationId": {"mediaType": "VIDEO"},
            },
            "video.encodedVideo",
        ),
    ],
)
def test_three_payload_shapes(payload: dict, shape: str) -> None:
    info, data = proto.parse_media_payload(payload, name="n")
    assert info.shape == shape and data == "QUJD"


def test_session_parsing() -> None:
    token = proto.parse_session(
        {"user": {}, "expires": "2025-11-01T10:00:00.000Z", "access_token": "ya29.x"}
    )
    assert token.access_token == "ya29.x"
    assert token.expires == datetime(2025, 11, 1, 10, tzinfo=timezone.utc)
    assert "ya29" not in repr(token)
    with pytest.raises(LoginRequired):
        proto.parse_session({"error": "ACCESS_TOKEN_REFRESH_NEEDED"})
    with pytest.raises(LoginRequired):
        proto.parse_session({})


@pytest.mark.parametrize("token", ["ya29.a\r\nX-Evil: 1", "ya29 a", "ya29.\u00e9"])
def test_a_session_token_a_header_cannot_carry_is_refused(token: str) -> None:
    with pytest.raises(ProtocolError, match="header"):
        proto.parse_session({"access_token": token, "user": {}})


def test_google_error() -> None:
    body = json.dumps(
        {
            "error": {
                "code": 429,
                "message": "slow",
                "status": "RESOURCE_EXHAUSTED",
                "details": [{"reason": "R"}],
            }
        }
    )
    error = proto.parse_google_error(body.encode())
    assert (error.code, error.status, error.reason, error.message) == (
        429,
        "RESOURCE_EXHAUSTED",
        "R",
        "slow",
    )
    assert proto.parse_google_error(b"<html>").status is None


def test_retry_after_forms() -> None:
    assert proto.parse_retry_after("7", now=0) == 7
    assert proto.parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480) == 10
    assert proto.parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412500) == 0
    assert proto.parse_retry_after("soon", now=0) is None
    assert proto.parse_retry_after(None, now=0) is None


def test_signed_url_expires_read_without_decoding() -> None:
    url = "https://storage.googleapis.com/b/k?GoogleAccessId=a%40b&Expires=1761749775&Signature=ab%2Bcd%3D"
    assert proto.signed_url_expires(url) == 1761749775
    assert proto.signed_url_expires("https://x/y?Signature=1") is None


# ------------------------------------------------------ streaming extractor


@given(
    st.binary(max_size=3000), st.lists(st.integers(1, 700), min_size=1, max_size=20), st.booleans()
)
@settings(max_examples=200, deadline=None)
def test_extractor_decodes_whatever_the_chunking(
    data: bytes, cuts: list[int], escape_slashes: bool
) -> None:
    payload = {
        "name": "n",
        "video": {
            "prompt": 'say "hi" \\ there',
            "encodedVideo": base64.b64encode(data).decode(),
            "seed": 3,
        },
    }
    body = json.dumps(payload)
    if escape_slashes:
        body = body.replace("/", "\\/")
    raw = body.encode()
    out = bytearray()
    extractor = PayloadExtractor(out.extend, where="t")
    position = 0
    for cut in cuts * 10:
        extractor.feed(raw[position : position + cut])
        position += cut
    extractor.feed(raw[position:])
    skeleton = extractor.finish()
    assert bytes(out) == data
    assert skeleton["video"]["encodedVideo"] == "" and skeleton["video"]["seed"] == 3
    assert skeleton["video"]["prompt"] == 'say "hi" \\ there'


def test_extractor_detects_truncation_and_corruption() -> None:
    body = json.dumps({"image": {"encodedImage": base64.b64encode(b"x" * 100).decode()}}).encode()
    extractor = PayloadExtractor(lambda _: None, where="t")
    extractor.feed(body[:-10])
    with pytest.raises(ProtocolError, match="truncated"):
        extractor.finish()
    extractor = PayloadExtractor(lambda _: None, where="t")
    with pytest.raises(ProtocolError, match="corrupt"):
        extractor.feed(b'{"image": {"encodedImage": "@@@@"}}')


@given(st.binary(max_size=200))
@settings(max_examples=300, deadline=None)
def test_fuzz_extractor_raises_only_protocol_error(junk: bytes) -> None:
    extractor = PayloadExtractor(lambda _: None, where="t")
    try:
        extractor.feed(junk)
        extractor.finish()
    except ProtocolError:
        pass
