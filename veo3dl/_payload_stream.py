"""Pull the base64 file out of a media answer while it streams in.

A Veo video answer is one JSON object whose ``video.encodedVideo`` string is
the whole file in base64: a 1 GB video is a 1.3 GB body.  Parsing that with
``json.loads`` needs several copies of it in memory.  :class:`PayloadExtractor`
instead reads the body chunk by chunk, decodes the payload string straight
into a sink (a file being written) and keeps only the small rest of the JSON
(the "skeleton", with ``""`` where the payload was) for ``json.loads``.

It is a scanner, not a parser: it tracks strings, escapes and the last object
key, which is all it needs to recognise a payload string.  Whatever it keeps
is then parsed and validated by :func:`veo3dl._protocol.parse_media_payload`.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from typing import Any

from veo3dl._protocol import PAYLOAD_KEYS
from veo3dl.exceptions import ProtocolError

__all__ = ["PayloadExtractor"]

_MAX_SKELETON = 4 * 1024 * 1024
_MAX_KEY = 64
_URLSAFE = bytes.maketrans(b"-_", b"+/")
_QUOTE, _BACKSLASH, _COLON = 0x22, 0x5C, 0x3A

# Scanner states.
_OUTSIDE, _STRING, _PAYLOAD = 0, 1, 2


class PayloadExtractor:
    """Feed a media answer's body in chunks; payload bytes go to *sink*.

    ``sink`` receives decoded file bytes in order.  After the last chunk,
    :meth:`finish` returns the parsed skeleton.  ``decoded`` counts the bytes
    given to the sink; ``payload_key`` names the key that held them.
    """

    def __init__(self, sink: Callable[[bytes], object], *, where: str) -> None:
        self._sink = sink
        self._where = where
        self._skeleton = bytearray()
        self._state = _OUTSIDE
        self._escape = False
        self._key = bytearray()  # current short string, a candidate object key
        self._key_too_long = False
        self._last_string: bytes | None = None
        self._after_colon = False
        self._b64_rest = b""
        self.decoded = 0
        self.payload_key: str | None = None

    # ------------------------------------------------------------ feeding

    def feed(self, chunk: bytes) -> None:
        """Consume the next piece of the body."""
        pos, end = 0, len(chunk)
        while pos < end:
            if self._state == _OUTSIDE:
                pos = self._scan_outside(chunk, pos, end)
            elif self._state == _STRING:
                pos = self._scan_string(chunk, pos, end)
            else:
                pos = self._scan_payload(chunk, pos, end)
        if len(self._skeleton) > _MAX_SKELETON:
            raise ProtocolError("answer holds more than the file and its fields", where=self._where)

    def _scan_outside(self, chunk: bytes, pos: int, end: int) -> int:
        quote = chunk.find(b'"', pos, end)
        stop = end if quote < 0 else quote
        for byte in chunk[pos:stop]:
            if byte == _COLON:
                self._after_colon = True
            elif byte not in b" \t\r\n":
                self._after_colon = False
                self._last_string = None
        self._skeleton += chunk[pos:stop]
        if quote < 0:
            return end
        self._skeleton.append(_QUOTE)
        if (
            self._after_colon
            and self._last_string is not None
            and self._last_string.decode("ascii", "replace") in PAYLOAD_KEYS
        ):
            self._state = _PAYLOAD
            self.payload_key = self._last_string.decode("ascii")
        else:
            self._state = _STRING
            self._key.clear()
            self._key_too_long = False
        self._after_colon = False
        return quote + 1

    def _scan_string(self, chunk: bytes, pos: int, end: int) -> int:
        while pos < end:
            if self._escape:
                self._escape = False
                self._skeleton.append(chunk[pos])
                self._key_too_long = True  # keys we look for never hold escapes
                pos += 1
                continue
            quote = chunk.find(b'"', pos, end)
            slash = chunk.find(b"\\", pos, end)
            stop = quote if slash < 0 or (0 <= quote < slash) else slash
            if stop < 0:
                self._take_string_text(chunk[pos:end])
                return end
            self._take_string_text(chunk[pos:stop])
            self._skeleton.append(chunk[stop])
            if chunk[stop] == _BACKSLASH:
                self._escape = True
                pos = stop + 1
                continue
            self._state = _OUTSIDE
            self._last_string = None if self._key_too_long else bytes(self._key)
            return stop + 1
        return end

    def _take_string_text(self, text: bytes) -> None:
        self._skeleton += text
        if not self._key_too_long:
            if len(self._key) + len(text) > _MAX_KEY:
                self._key_too_long = True
            else:
                self._key += text

    def _scan_payload(self, chunk: bytes, pos: int, end: int) -> int:
        while pos < end:
            if self._escape:
                self._escape = False
                escaped = chunk[pos : pos + 1]
                # Base64 holds no character that needs escaping, but encoders may
                # write "/" as "\/" and wrap lines as "\n".
                if escaped == b"/":
                    self._decode(b"/")
                elif escaped not in (b"n", b"r"):
                    raise ProtocolError(
                        "unexpected escape inside the file's base64", where=self._where
                    )
                pos += 1
                continue
            quote = chunk.find(b'"', pos, end)
            slash = chunk.find(b"\\", pos, end)
            stop = quote if slash < 0 or (0 <= quote < slash) else slash
            if stop < 0:
                self._decode(chunk[pos:end])
                return end
            self._decode(chunk[pos:stop])
            if chunk[stop] == _BACKSLASH:
                self._escape = True
                pos = stop + 1
                continue
            self._flush_base64()
            self._skeleton.append(_QUOTE)
            self._state = _OUTSIDE
            self._last_string = None
            return stop + 1
        return end

    # ----------------------------------------------------------- base64

    def _decode(self, text: bytes) -> None:
        data = self._b64_rest + text.translate(_URLSAFE, b" \t\r\n")
        usable = len(data) - len(data) % 4
        self._b64_rest = data[usable:]
        if usable:
            self._emit(data[:usable])

    def _flush_base64(self) -> None:
        rest, self._b64_rest = self._b64_rest, b""
        if rest:
            # Unpadded base64 is accepted: pad to a multiple of four.
            self._emit(rest + b"=" * (-len(rest) % 4))

    def _emit(self, text: bytes) -> None:
        try:
            data = base64.b64decode(text, validate=True)
        except binascii.Error:
            raise ProtocolError("the file's base64 is corrupt", where=self._where) from None
        if data:
            self.decoded += len(data)
            self._sink(data)

    # ----------------------------------------------------------- result

    def finish(self) -> Any:
        """Return the parsed skeleton; raise :class:`ProtocolError` if the body was cut short."""
        if self._state != _OUTSIDE or self._escape:
            raise ProtocolError("answer ended inside a string (truncated body)", where=self._where)
        try:
            return json.loads(bytes(self._skeleton))
        except ValueError as error:
            reason = error.msg if isinstance(error, json.JSONDecodeError) else str(error)
            raise ProtocolError(f"answer is not valid JSON ({reason})", where=self._where) from None
        except RecursionError:
            raise ProtocolError("answer is nested too deeply", where=self._where) from None
