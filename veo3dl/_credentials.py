"""Credentials for Flow: the browser cookie, a bearer token and the API key.

They live in memory only.  Neither ``repr`` nor ``str`` shows them, and they
are never written to the catalogue, a file or a log.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import attrs

from veo3dl.exceptions import ConfigError

__all__ = ["Credentials", "header_safe"]

ENV_COOKIE = "VEO3DL_COOKIE"
ENV_BEARER_TOKEN = "VEO3DL_BEARER_TOKEN"  # noqa: S105 - a variable name, not a secret
ENV_API_KEY = "VEO3DL_API_KEY"


def _present(value: str | None) -> str:
    return "None" if value is None else "'***'"


def _clean(value: str | None) -> str | None:
    if not isinstance(value, str):
        return value  # the validator names the field
    value = value.strip()
    return value or None


# What each value may hold once stripped: it goes into an HTTP header (or the
# query), where requests and http.client refuse anything else with an error
# that quotes the whole value.  The cookie keeps inner spaces ("a=1; b=2").
_VISIBLE_ASCII = frozenset(map(chr, range(0x21, 0x7F)))
_COOKIE_CHARS = _VISIBLE_ASCII | {" "}
_FIELDS = {
    # field: (environment variable, whether it may hold inner spaces)
    "cookie": (ENV_COOKIE, True),
    "bearer_token": (ENV_BEARER_TOKEN, False),
    "api_key": (ENV_API_KEY, False),
}


def header_safe(value: str, *, spaces: bool = False) -> bool:
    """True when *value* can travel in an HTTP header: visible ASCII (and, with *spaces*, spaces)."""
    return set(value) <= (_COOKIE_CHARS if spaces else _VISIBLE_ASCII)


def _check(_instance: object, attribute: attrs.Attribute[str | None], value: object) -> None:
    """Refuse a value that cannot be sent, naming the field but never quoting the value."""
    if value is None:
        return
    env, spaces = _FIELDS[attribute.name]
    name = f"{attribute.name} ({env})"
    if not isinstance(value, str):
        raise ConfigError(f"{name} must be a string, not {type(value).__name__}")
    if header_safe(value, spaces=spaces):
        return
    if "\n" in value or "\r" in value:
        found = "a line break"
    elif not value.isascii():
        found = "a non-ASCII character (a curly quote or an ellipsis from copying?)"
    elif " " in value:
        found = "a space"
    else:
        found = "a control character"
    raise ConfigError(
        f"{name} holds {found}, which cannot be sent in an HTTP request",
        hint=f"copy the value again from the browser, whole and on one line, into {env}",
    )


@attrs.frozen(repr=False)
class Credentials:
    """What Flow needs to know who you are.

    ``cookie`` is the ``Cookie`` header value of a signed-in labs.google tab
    (it must hold ``__Secure-next-auth.session-token``); the bare token value
    is accepted too.  ``bearer_token`` is an access token (``ya29...``),
    optional when a cookie is given: one is minted from the session.
    ``api_key`` is the ``key=`` the web app sends to the api host.

    Each is stripped of surrounding whitespace; one that still holds a line
    break, a control or a non-ASCII character (spaces too, but for the
    cookie) is refused with :class:`~veo3dl.ConfigError`.
    """

    cookie: str | None = attrs.field(default=None, converter=_clean, validator=_check)
    bearer_token: str | None = attrs.field(default=None, converter=_clean, validator=_check)
    api_key: str | None = attrs.field(default=None, converter=_clean, validator=_check)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Credentials:
        """Read ``VEO3DL_COOKIE``, ``VEO3DL_BEARER_TOKEN`` and ``VEO3DL_API_KEY``."""
        env = os.environ if environ is None else environ
        return cls(
            cookie=env.get(ENV_COOKIE),
            bearer_token=env.get(ENV_BEARER_TOKEN),
            api_key=env.get(ENV_API_KEY),
        )

    @property
    def cookie_header(self) -> str | None:
        """The ``Cookie`` header to send, completing a bare session token."""
        if self.cookie is None:
            return None
        if "=" in self.cookie:
            return self.cookie
        return f"__Secure-next-auth.session-token={self.cookie}"

    def secrets(self) -> tuple[str, ...]:
        """The secret strings held, for scrubbing them out of text.

        Besides the whole cookie, each cookie value on its own: a log line or
        error may quote one cookie without the others.
        """
        found = [s for s in (self.cookie, self.bearer_token, self.api_key) if s]
        for part in (self.cookie or "").split(";"):
            value = part.partition("=")[2].strip()
            if len(value) >= 8:
                found.append(value)
        return tuple(found)

    def __repr__(self) -> str:
        return (
            f"Credentials(cookie={_present(self.cookie)}, "
            f"bearer_token={_present(self.bearer_token)}, api_key={_present(self.api_key)})"
        )

    __str__ = __repr__
