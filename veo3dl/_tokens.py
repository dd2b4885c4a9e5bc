"""Bearer tokens: kept, renewed ahead of expiry, and renewed once per 401.

A :class:`TokenSource` hands out the current token and renews it when a
request was refused.  ``refresh(stale)`` names the token that failed, so of
many threads refused at once only the first one renews; the rest get the new
token it fetched (single flight).  Worker processes use a source backed by
the parent's coordinator so that a batch renews once, not once per worker.

Renewing ahead of expiry is a convenience: when it fails (the session host
answers 503, say), the token still in hand is good until it expires, so the
failure is logged and the request goes on with it.  Only a renewal that is
needed, because the token has expired or was refused, fails the request.
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Callable
from typing import Protocol

from veo3dl._logging import get_logger
from veo3dl._protocol import SessionToken
from veo3dl.exceptions import LoginRequired, TokenExpired, Veo3dlError

__all__ = ["SessionTokenSource", "TokenSource"]

_log = get_logger(__name__)
_NO_COOKIE_HINT = "set VEO3DL_COOKIE so veo3dl can renew it, or give a fresh VEO3DL_BEARER_TOKEN"
# After a failed early renewal, the next try waits this share of the time
# the token has left: a few more tries before it expires, not one per request.
_EARLY_RETRY_SHARE = 0.5


class TokenSource(Protocol):
    """Hands out bearer tokens for the api host."""

    def get(self) -> str:
        """The token to use now, renewed first if it is about to expire."""

    def refresh(self, stale: str) -> str:
        """A token other than *stale*, which the api host just refused."""


class SessionTokenSource:
    """Tokens minted from the session cookie by calling *mint*.

    *initial* is a token given by the user (its expiry unknown: it is used
    until refused).  Without *mint* (no cookie), a refused token is final:
    :class:`TokenExpired`.  A minted token is renewed *margin* seconds before
    its ``expires``, or at a tenth of its lifetime when that is shorter.
    If that early renewal fails, the current token is used until it expires
    (a warning is logged, and renewal is tried again later); once it has
    expired, a failed renewal is raised.
    """

    def __init__(
        self,
        *,
        initial: str | None,
        mint: Callable[[], SessionToken] | None,
        margin: float = 300.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._lock = threading.Lock()
        self._token = initial
        self._renew_at: float | None = None
        self._expires_at: float | None = None
        self._mint = mint
        self._margin = margin
        self._clock = clock
        self._login_required: LoginRequired | None = None
        self.mints = 0

    @property
    def renew_at(self) -> float | None:
        """When (by the source's clock) the current token will be renewed; ``None``: on refusal."""
        return self._renew_at

    def get(self) -> str:
        """The current token, minting one when there is none or it is due."""
        with self._lock:
            due = self._renew_at is not None and self._clock() >= self._renew_at
            if self._token is not None and not due:
                return self._token
            if self._mint is None:
                if self._token is not None:
                    return self._token
                raise TokenExpired(
                    "no bearer token and no cookie to mint one", hint=_NO_COOKIE_HINT
                )
            if self._token is None or self._expires_at is None:
                return self._mint_locked()
            return self._renew_early_locked(self._token, self._expires_at)

    def _renew_early_locked(self, current: str, expires_at: float) -> str:
        """Renew a token that is due; keep *current* if that fails before it expires."""
        try:
            return self._mint_locked()
        except Veo3dlError as error:
            now = self._clock()
            if now >= expires_at:
                raise
            left = expires_at - now
            self._renew_at = now + left * _EARLY_RETRY_SHARE
            _log.warning(
                "bearer_token_renewal_failed",
                error=str(error),
                seconds_left=round(left, 1),
                note="the current token is used until it expires",
            )
            return current

    def refresh(self, stale: str) -> str:
        """Renew after *stale* was refused, unless another thread already did."""
        with self._lock:
            if self._token is not None and self._token != stale:
                return self._token
            if self._mint is None:
                raise TokenExpired(
                    "the bearer token was refused (expired?)", status=401, hint=_NO_COOKIE_HINT
                )
            return self._mint_locked()

    def _mint_locked(self) -> str:
        assert self._mint is not None
        if self._login_required is not None:
            # The cookie is stale: asking the session again cannot help, only a login can.
            # A copy per raise: threads raising one instance would share its traceback.
            raise copy.copy(self._login_required)
        try:
            minted = self._mint()
        except LoginRequired as error:
            self._login_required = error
            raise
        self.mints += 1
        self._token = minted.access_token
        if minted.expires is None:
            self._renew_at = self._expires_at = None
        else:
            expires = minted.expires.timestamp()
            now = self._clock()
            lead = min(self._margin, max(expires - now, 0.0) / 10)
            self._renew_at = expires - lead
            self._expires_at = expires
        return self._token
