"""Credentials, redaction and the token source: secrets never shown, tokens renewed once."""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta, timezone

import pytest

from veo3dl import Credentials, TokenExpired
from veo3dl._logging import SecretFilter, get_logger, protect_stdlib_loggers
from veo3dl._protocol import SessionToken
from veo3dl._redaction import redact_text, redact_url
from veo3dl._tokens import SessionTokenSource

COOKIE = "__Secure-next-auth.session-token=eyJhbGciOiJkaXIiLCJlbmMiOiJBMjU2R0NNIn0..secretcookie"
TOKEN = "ya29.a0AfB_byC-secret-token"
KEY = "AIzaSyD-EXAMPLEKEY1234567890abcdefg"


def test_repr_and_str_hide_secrets() -> None:
    creds = Credentials(cookie=COOKIE, bearer_token=TOKEN, api_key=KEY)
    for text in (repr(creds), str(creds), f"{creds}", f"{creds!r}"):
        for secret in (COOKIE, TOKEN, KEY, "secretcookie"):
            assert secret not in text
    assert "cookie='***'" in repr(creds) and "bearer_token=None" not in repr(creds)


def test_from_env() -> None:
    env = {"VEO3DL_COOKIE": f" {COOKIE} ", "VEO3DL_BEARER_TOKEN": "", "VEO3DL_API_KEY": KEY}
    creds = Credentials.from_env(env)
    assert creds.cookie == COOKIE and creds.bearer_token is None and creds.api_key == KEY


def test_bare_session_token_becomes_a_cookie_header() -> None:
    assert Credentials(cookie="abc").cookie_header == "__Secure-next-auth.session-token=abc"
    assert Credentials(cookie=COOKIE).cookie_header == COOKIE


@pytest.mark.parametrize(
    "text",
    [
        f"GET /v1/media/x?key={KEY}&clientContext.tool=PINHOLE",
        f"Authorization: Bearer {TOKEN}",
        f"cookie: {COOKIE}",
        "https://storage.googleapis.com/b/k?GoogleAccessId=a&Expires=1&Signature=abc%2Bdef%3D",
        f"token={TOKEN} and {KEY}",
    ],
)
def test_redaction_removes_every_secret_shape(text: str) -> None:
    cleaned = redact_text(text)
    for secret in (KEY, TOKEN, "secretcookie", "abc%2Bdef%3D"):
        assert secret not in cleaned
    assert "[REDACTED]" in cleaned


def test_redact_url_keeps_the_rest() -> None:
    url = f"https://h/v1/media/CAMa$1?key={KEY}&clientContext.tool=PINHOLE"
    assert redact_url(url) == "https://h/v1/media/CAMa$1?key=[REDACTED]&clientContext.tool=PINHOLE"


def test_exact_secrets_are_removed_whatever_their_shape() -> None:
    assert redact_text("value=hunter2-long", ["hunter2-long"]) == "value=[REDACTED]"


def test_stdlib_logs_are_scrubbed(caplog: pytest.LogCaptureFixture) -> None:
    protect_stdlib_loggers()
    protect_stdlib_loggers()  # idempotent
    assert (
        sum(
            isinstance(f, SecretFilter) for f in logging.getLogger("urllib3.connectionpool").filters
        )
        == 1
    )
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("urllib3.connectionpool").debug(
            '"GET /v1/media/x?key=%s HTTP/1.1" 200', KEY
        )
        get_logger("veo3dl._test").debug(
            "fetched", url=f"https://h/?key={KEY}", header=f"Bearer {TOKEN}"
        )
    assert KEY not in caplog.text and TOKEN not in caplog.text
    assert "fetched" in caplog.text


def test_library_logs_nothing_by_default(capsys: pytest.CaptureFixture[str]) -> None:
    get_logger("veo3dl._quiet").warning("something", detail=1)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


# ------------------------------------------------------------------ tokens


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def minter(clock: Clock, lifetime: float = 3600.0):
    count = 0

    def mint() -> SessionToken:
        nonlocal count
        count += 1
        expires = datetime.fromtimestamp(clock.now + lifetime, tz=timezone.utc)
        return SessionToken(access_token=f"ya29.minted-{count}", expires=expires)

    return mint


def test_token_is_renewed_ahead_of_expiry() -> None:
    clock = Clock()
    source = SessionTokenSource(initial=None, mint=minter(clock), margin=300, clock=clock)
    first = source.get()
    clock.now += 3600 - 301
    assert source.get() == first
    clock.now += 2
    assert source.get() != first
    assert source.mints == 2


def test_short_lived_tokens_renew_at_a_tenth_of_their_life() -> None:
    clock = Clock()
    source = SessionTokenSource(
        initial=None, mint=minter(clock, lifetime=100), margin=300, clock=clock
    )
    first = source.get()
    clock.now += 89
    assert source.get() == first
    clock.now += 2
    assert source.get() != first


def test_many_threads_refused_at_once_renew_once() -> None:
    clock = Clock()
    source = SessionTokenSource(initial="ya29.old", mint=minter(clock), clock=clock)
    barrier = threading.Barrier(8)
    results = []

    def refused() -> None:
        barrier.wait()
        results.append(source.refresh("ya29.old"))

    threads = [threading.Thread(target=refused) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert set(results) == {"ya29.minted-1"} and source.mints == 1


def test_no_cookie_means_token_expired_with_a_hint() -> None:
    source = SessionTokenSource(initial="ya29.old", mint=None)
    assert source.get() == "ya29.old"
    with pytest.raises(TokenExpired, match="VEO3DL_COOKIE"):
        source.refresh("ya29.old")
    with pytest.raises(TokenExpired):
        SessionTokenSource(initial=None, mint=None).get()
    assert timedelta(0) == timedelta(0)
