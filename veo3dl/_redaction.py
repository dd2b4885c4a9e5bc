"""Scrubbing secrets out of text before it reaches a log, a repr or an error.

Flow's secrets travel in four places: the session cookie, the ``Authorization``
bearer header, the ``key=`` query parameter of the api host, and the
``Signature=`` of a signed file URL.  Everything veo3dl shows a human passes
through :func:`redact_text` or :func:`redact_url` first.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import urlsplit

REDACTED = "[REDACTED]"

# Query parameters whose values grant access on their own, also when a URL
# travels percent-encoded inside another (``%3F``/``%26`` before, ``%3D`` after).
_SECRET_QUERY = re.compile(
    r"(?i)(?P<k>(?:^|[?&;\s]|%3F|%26)"
    r"(?:key|api_?key|signature|access_token|token|sig|x-goog-signature)(?:=|%3D))"
    r"(?:(?!%26)[^&#\s\"'<>])*"
)
# "Bearer ya29..." anywhere, e.g. a header echoed in a message.
_BEARER = re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+")
# Google OAuth access tokens and API keys have recognisable shapes.
_TOKEN_SHAPES = re.compile(r"\bya29\.[A-Za-z0-9._~+/=-]+|\bAIza[0-9A-Za-z_-]{20,}")
# The next-auth session cookie (and its chunked variants ".0", ".1").
_SESSION_COOKIE = re.compile(r"(?i)((?:__Secure-)?next-auth\.session-token(?:\.\d+)?=)[^;\s\"']*")
_HEADER_LINE = re.compile(r"(?im)^(\s*(?:authorization|cookie|x-goog-api-key)\s*:\s*).*$")


def redact_text(text: str, secrets: Iterable[str] = ()) -> str:
    """Return *text* with every known secret shape and every given secret replaced.

    *secrets* are exact strings (a cookie, a token, a key) to remove wherever
    they appear, whatever their shape.  Empty strings are ignored.
    """
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, REDACTED)
    text = _HEADER_LINE.sub(lambda m: m.group(1) + REDACTED, text)
    text = _SESSION_COOKIE.sub(lambda m: m.group(1) + REDACTED, text)
    text = _BEARER.sub(lambda m: m.group(1) + REDACTED, text)
    text = _TOKEN_SHAPES.sub(REDACTED, text)
    return _SECRET_QUERY.sub(lambda m: m.group("k") + REDACTED, text)


def redact_url(url: str) -> str:
    """Return *url* safe to show: secret query values replaced, the rest kept."""
    return redact_text(url)


def url_for_humans(url: str) -> str:
    """Return ``scheme://host/path`` of *url* without its query, for short messages."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return redact_url(url)
    if not parts.scheme:
        return redact_url(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"
