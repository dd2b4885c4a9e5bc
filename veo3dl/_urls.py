"""Which hosts veo3dl talks to, and checks on URLs that come from outside.

Base URLs are configured by the user (``labs_url``, ``api_url``); signed
file URLs arrive in the service's answers, so they are checked against an
allow-list of hosts before anything is fetched from them.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from veo3dl.exceptions import ConfigError, DownloadError

__all__ = [
    "DEFAULT_API_URL",
    "DEFAULT_FILE_HOSTS",
    "DEFAULT_LABS_URL",
    "LOOPBACK_HOSTS",
    "check_base_url",
    "check_file_url",
]

DEFAULT_LABS_URL = "https://labs.google"
DEFAULT_API_URL = "https://aisandbox-pa.googleapis.com"
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
DEFAULT_FILE_HOSTS = frozenset(
    {
        "storage.googleapis.com",
        "flow-content.google",
        "lh3.googleusercontent.com",
        "video.googleusercontent.com",
    }
    | LOOPBACK_HOSTS
)


def check_base_url(url: str, what: str) -> str:
    """*url* as ``scheme://host[:port]`` without a trailing slash, or :class:`ConfigError`."""
    text = url.strip().rstrip("/")
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise ConfigError(f"{what} is not a valid URL: {text!r}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{what} must be http(s)://host[:port], got {text!r}")
    if parts.path or parts.query or parts.fragment or parts.username or parts.password:
        raise ConfigError(
            f"{what} must be scheme://host[:port] only, got {text!r}",
            hint="veo3dl appends the real paths itself",
        )
    return text


def check_file_url(
    url: str, allowed_hosts: frozenset[str], *, item: str | None = None, what: str = "file URL"
) -> None:
    """Refuse a signed URL with a foreign scheme or a host off the allow-list.

    Plain ``http`` is accepted for loopback hosts only (the bundled emulator).
    *what* names the URL in the message (a redirect's target is checked too).
    The :class:`~veo3dl.DownloadError` names *item*, never the URL's query.
    """
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        # A port out of range raises here; left to requests, its error would
        # quote the whole URL, Signature included.
        parts.port  # noqa: B018
    except ValueError:
        parts = None
    # Raised outside the except block, so no chained error quotes the URL.
    if parts is None or parts.username is not None:
        raise DownloadError(
            f"refusing a malformed {what} (bad host, port or user part)",
            item=item,
            hint="run a sync to get fresh URLs",
        )
    if parts.scheme not in ("https", "http") or (
        parts.scheme == "http" and host not in LOOPBACK_HOSTS
    ):
        raise DownloadError(
            f"refusing {what} with scheme {parts.scheme or '(none)'!r}",
            item=item,
            hint="only https URLs from the allowed hosts are fetched",
        )
    if host not in allowed_hosts:
        raise DownloadError(
            f"refusing {what} on unexpected host {host!r}",
            item=item,
            hint="add it to allowed_file_hosts if you trust it",
        )
