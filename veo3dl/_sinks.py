"""Where downloaded bytes go: the small interface the client writes into.

A sink must be able to start over (``reset``), because a retried API answer
repeats the whole file, and to say how much it holds (``size``), because a
resumed signed-URL download asks for the rest with ``Range``.
"""

from __future__ import annotations

import io
from typing import Protocol

import requests

__all__ = ["BytesSink", "Sink", "read_at_most"]


class Sink(Protocol):
    """A byte destination that can be emptied and measured."""

    @property
    def size(self) -> int:
        """Bytes written so far."""

    def write(self, data: bytes) -> object:
        """Append *data*."""

    def reset(self) -> None:
        """Discard everything written."""


class BytesSink:
    """A :class:`Sink` in memory."""

    def __init__(self) -> None:
        self._buffer = io.BytesIO()

    @property
    def size(self) -> int:
        """Bytes written so far."""
        return self._buffer.tell()

    def write(self, data: bytes) -> int:
        """Append *data*."""
        return self._buffer.write(data)

    def reset(self) -> None:
        """Discard everything written."""
        self._buffer = io.BytesIO()

    def getvalue(self) -> bytes:
        """Everything written."""
        return self._buffer.getvalue()


def read_at_most(response: requests.Response, limit: int) -> bytes:
    """Up to *limit* bytes of a streamed response body (an error page, say)."""
    try:
        data = response.raw.read(limit, decode_content=True)
    except Exception:  # noqa: BLE001 - an unreadable error body is just an empty one
        return b""
    return data if isinstance(data, bytes) else b""
