"""Credentials, redaction and the token source: secrets never shown, tokens renewed once."""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta, timezone

import pytest

from veo3dl import ApiError, ConfigError, Credentials, TokenExpired
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


@pytest.mark.parametrize(
    ("field", "env", "bad"),
    [
        ("cookie", "VEO3DL_COOKIE", f"{COOKIE}\r\nX-Injected: 1"),
        ("cookie", "VEO3DL_COOKIE", "__Secure-next-auth.session-token=abc\ndef-secretcookie"),
        ("cookie", "VEO3DL_COOKIE", "__Secure-next-auth.session-token=abc\x00secretcookie"),
        ("cookie", "VEO3DL_COOKIE", "__Secure-next-auth.session-token=abc\u2026secretcookie"),
        ("bearer_token", "VEO3DL_BEARER_TOKEN", f"{TOKEN}\r\nX-Injected: 1"),
        ("bearer_token", "VEO3DL_BEARER_TOKEN", f"{TOKEN} {TOKEN}"),
        ("api_key", "VEO3DL_API_KEY", f"{KEY}\x7f"),
        ("api_key", "VEO3DL_API_KEY", f"\u201c{KEY}\u201d"),
    ],
)
def test_values_that_cannot_be_sent_are_refused_by_name(field: str, env: str, bad: str) -> None:
    with pytest.raises(ConfigError) as info:
        Credentials(**{field: bad})
    message = str(info.value)
    assert field in message and env in message and "copy the value again" in message
    for piece in (bad, bad.strip(), COOKIE, TOKEN, KEY, "secretcookie"):
        assert piece not in message
    with pytest.raises(ConfigError, match=env):
        Credentials.from_env({env: bad})


def test_values_are_stripped_and_inner_cookie_spaces_kept() -> None:
    creds = Credentials(cookie=f" a=1; {COOKIE}\r\n", bearer_token=f"\t{TOKEN}\n", api_key=KEY)
    assert creds.cookie == f"a=1; {COOKIE}" and creds.bearer_token == TOKEN
    with pytest.raises(ConfigError, match="must be a string"):
        Credentials(api_key=12345)  # type: ignore[arg-type]


class FailingMint:
    """Mints like :func:`minter` until told to fail."""

    def __init__(self, clock: Clock) -> None:
        self.mint = minter(clock)
        self.failing = False
        self.calls = 0

    def __call__(self) -> SessionToken:
        self.calls += 1
        if self.failing:
            raise ApiError("HTTP 503: the session host is down", status=503)
        return self.mint()


def test_failed_early_renewal_keeps_the_valid_token(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    mint = FailingMint(clock)
    source = SessionTokenSource(initial=None, mint=mint, margin=300, clock=clock)
    first = source.get()
    mint.failing = True
    clock.now += 3600 - 200  # due for renewal, 200 s left
    with caplog.at_level(logging.WARNING, logger="veo3dl"):
        assert source.get() == first
    assert "bearer_token_renewal_failed" in caplog.text and "503" in caplog.text
    assert mint.calls == 2
    assert source.get() == first  # not asked again at once: the next try waits
    assert mint.calls == 2
    clock.now += 150  # 50 s left: past the pause, tried again, still fails, still served
    assert source.get() == first
    assert mint.calls == 3
    mint.failing = False
    clock.now += 40
    assert source.get() != first  # renewal works again
    assert source.mints == 2


def test_failed_renewal_of_an_expired_token_is_raised() -> None:
    clock = Clock()
    mint = FailingMint(clock)
    source = SessionTokenSource(initial=None, mint=mint, margin=300, clock=clock)
    first = source.get()
    mint.failing = True
    clock.now += 3600  # expired
    with pytest.raises(ApiError):
        source.get()
    clock.now -= 1000  # not yet expired by the clock, but refused by the api host
    with pytest.raises(ApiError):
        source.refresh(first)
