"""The emulated account's secrets: session cookie, API key and bearer tokens.

Every secret is random per emulator (``secrets``), so no test can pass by
accident with a hard-coded value.  Tokens are minted by the session endpoint;
each one dies at its ``expires`` time, after ``token_calls`` media calls when
that option is set, or when :meth:`AuthState.expire_all` is called.
"""

from __future__ import annotations

import enum
import hmac
import secrets
import string
import threading
from collections.abc import Callable
from datetime import datetime, timezone

import attrs

from veo3dl._credentials import Credentials
from veo3dl.testing._http import Response, google_error, json_response

__all__ = ["COOKIE_NAME", "AuthState", "BearerCheck"]

COOKIE_NAME = "__Secure-next-auth.session-token"
_KEY_ALPHABET = string.ascii_letters + string.digits + "-_"


@attrs.define
class _Token:
    expires_at: float
    calls_left: int | None


class BearerCheck(enum.Enum):
    """Whether a bearer token was accepted, and if not, why."""

    OK = "ok"
    MISSING = "missing"
    UNKNOWN = "unknown"
    EXPIRED = "expired"
    USED_UP = "used_up"


class AuthState:
    """The account's secrets and the live bearer tokens (thread-safe)."""

    def __init__(
        self, *, clock: Callable[[], float], lifetime: float, token_calls: int | None
    ) -> None:
        self._clock = clock
        self._lifetime = lifetime
        self._token_calls = token_calls
        self._lock = threading.Lock()
        self._tokens: dict[str, _Token] = {}
        self._session = secrets.token_urlsafe(48)
        self.api_key = "AIza" + "".join(secrets.choice(_KEY_ALPHABET) for _ in range(35))
        self.stale_cookie = False
        self.initial_token, _ = self.mint()

    def __repr__(self) -> str:
        return f"AuthState(tokens={len(self._tokens)}, stale_cookie={self.stale_cookie})"

    @property
    def cookie_header(self) -> str:
        """The ``Cookie`` header a signed-in browser sends."""
        return f"{COOKIE_NAME}={self._session}"

    def credentials(self) -> Credentials:
        """Credentials that the emulator accepts."""
        return Credentials(
            cookie=self.cookie_header, bearer_token=self.initial_token, api_key=self.api_key
        )

    def cookie_state(self, header: str | None) -> str:
        """``missing`` (no session cookie), ``valid``, or ``stale`` (wrong or switched off)."""
        value = None
        for pair in (header or "").split(";"):
            key, sep, val = pair.strip().partition("=")
            if sep and key == COOKIE_NAME:
                value = val.strip()
        if value is None:
            return "missing"
        if self.stale_cookie or not _same_secret(value, self._session):
            return "stale"
        return "valid"

    def mint(self) -> tuple[str, float]:
        """A fresh bearer token and the Unix time it expires."""
        token = "ya29.a0" + secrets.token_urlsafe(96)
        expires_at = self._clock() + self._lifetime
        with self._lock:
            self._tokens[token] = _Token(expires_at, self._token_calls)
        return token, expires_at

    def key_ok(self, key: str | None) -> bool:
        """Whether *key* is the account's API key."""
        return key is not None and _same_secret(key, self.api_key)

    def use_bearer(self, authorization: str | None) -> BearerCheck:
        """Check an ``Authorization`` header and count one call against its token."""
        scheme, _, token = (authorization or "").strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return BearerCheck.MISSING
        with self._lock:
            state = self._tokens.get(token.strip())
            if state is None:
                return BearerCheck.UNKNOWN
            if self._clock() >= state.expires_at:
                return BearerCheck.EXPIRED
            if state.calls_left is not None:
                if state.calls_left <= 0:
                    return BearerCheck.USED_UP
                state.calls_left -= 1
        return BearerCheck.OK

    def expire_all(self) -> None:
        """Make every token minted so far invalid."""
        with self._lock:
            for state in self._tokens.values():
                state.expires_at = float("-inf")

    def session_response(self, cookie_header: str | None) -> Response:
        """The answer of ``GET /fx/api/auth/session``."""
        cookie = self.cookie_state(cookie_header)
        if cookie == "missing":
            return google_error(401, "No session cookie.", reason="CREDENTIALS_MISSING")
        if cookie == "stale":
            # The service answers 200 and says so in the body.
            return json_response({"error": "ACCESS_TOKEN_REFRESH_NEEDED"})
        token, expires_at = self.mint()
        return json_response(
            {
                "user": {
                    "name": "Flow Emulator",
                    "email": "flow-emulator@example.com",
                    "image": "https://lh3.googleusercontent.com/a/emulated-user",
                },
                "expires": _iso_millis(expires_at),
                "access_token": token,
            }
        )


def _iso_millis(unix: float) -> str:
    moment = datetime.fromtimestamp(unix, tz=timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _same_secret(given: str, expected: str) -> bool:
    # compare_digest refuses non-ASCII str; a client may send anything.
    return hmac.compare_digest(given.encode("utf-8", "surrogateescape"), expected.encode())
