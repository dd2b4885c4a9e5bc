"""Signed file URLs, Cloud Storage V2 style: ``GoogleAccessId``, ``Expires``, ``Signature``.

The signature is as long as the real service's RSA signatures (256 bytes,
344 base64 characters), so it practically always holds ``+`` and ``/`` and
ends in ``==``: percent-encoded in the query they become ``%2B``, ``%2F`` and
``%3D``.  Verification compares the raw query value, so a client that
re-encodes or decodes the URL it was given is refused, as by the service.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import secrets
from urllib.parse import quote, unquote

__all__ = ["ACCESS_ID", "UrlSigner", "Verdict"]

ACCESS_ID = "labs-ai-sandbox-videoserver-prod@system.gserviceaccount.com"


class Verdict(enum.Enum):
    """The outcome of checking a signed URL."""

    OK = "ok"
    BAD_SIGNATURE = "bad_signature"
    EXPIRED = "expired"


class UrlSigner:
    """Issues and verifies signed URLs with a per-emulator random secret."""

    def __init__(self) -> None:
        self._secret = secrets.token_bytes(32)

    def __repr__(self) -> str:
        return "UrlSigner()"

    def _signature(self, path: str, expires: int) -> str:
        message = f"{path}\n{expires}".encode()
        raw = b"".join(
            hmac.new(self._secret, bytes([block]) + message, hashlib.sha256).digest()
            for block in range(8)
        )
        return base64.b64encode(raw).decode()

    def url(self, base: str, path: str, expires: int) -> str:
        """``base + path`` signed to be valid until Unix time *expires*."""
        signature = quote(self._signature(path, expires), safe="")
        return f"{base}{path}?GoogleAccessId={ACCESS_ID}&Expires={expires}&Signature={signature}"

    def verify(self, path: str, raw_query: str, now: float) -> tuple[Verdict, int]:
        """Check the raw query of a request for *path*; also returns its ``Expires``."""
        params: dict[str, str] = {}
        for pair in raw_query.split("&"):
            key, _, value = pair.partition("=")
            params.setdefault(key, value)
        expires_raw = params.get("Expires", "")
        if not expires_raw.isdigit() or unquote(params.get("GoogleAccessId", "")) != ACCESS_ID:
            return Verdict.BAD_SIGNATURE, 0
        expires = int(expires_raw)
        expected = quote(self._signature(path, expires), safe="")
        # Request targets are decoded as latin-1, so any character encodes.
        sent = params.get("Signature", "").encode("latin-1", "replace")
        if not hmac.compare_digest(sent, expected.encode()):
            return Verdict.BAD_SIGNATURE, expires
        if now >= expires:
            return Verdict.EXPIRED, expires
        return Verdict.OK, expires
