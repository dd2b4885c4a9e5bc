"""Deterministic media files that are produced on demand, never held whole.

Each emulated item's file is a :class:`MediaBlob`: a structurally valid PNG,
JPEG, WebP or MP4 of an exact size, made of a few constant parts (headers, a
tiny real image, trailers) around a padding region.  The padding is seeded
filler computed per 64 KiB block, so any byte range of a file of hundreds of
megabytes can be produced without producing the bytes before it.
"""

from __future__ import annotations

import bisect
import hashlib
import random
import struct
import zlib
from collections.abc import Iterator, Mapping
from types import MappingProxyType

import attrs

from veo3dl.exceptions import ConfigError

__all__ = [
    "FORMATS",
    "MediaBlob",
    "make_blob",
    "min_size",
    "normalize_size",
]

_BLOCK = 64 * 1024
_CHUNK = 256 * 1024

# format name -> (mime type, file extension)
FORMATS: Mapping[str, tuple[str, str]] = MappingProxyType(
    {
        "png": ("image/png", "png"),
        "jpeg": ("image/jpeg", "jpg"),
        "webp": ("image/webp", "webp"),
        "mp4": ("video/mp4", "mp4"),
    }
)


def _filler(seed: str, offset: int, length: int) -> bytes:
    """Bytes ``[offset, offset + length)`` of the filler stream named by *seed*."""
    out = bytearray()
    block, skip = divmod(offset, _BLOCK)
    while len(out) < length:
        data = random.Random(f"{seed}:{block}").randbytes(_BLOCK)
        out += data[skip : skip + length - len(out)]
        block += 1
        skip = 0
    return bytes(out)


@attrs.frozen
class _Fill:
    """A run of filler: *length* bytes starting at *stream_offset* of the stream."""

    stream_offset: int
    length: int


_Part = bytes | _Fill


def _part_len(part: _Part) -> int:
    return len(part) if isinstance(part, bytes) else part.length


@attrs.frozen(eq=False)
class MediaBlob:
    """One emulated file: its size, type and bytes, readable at any offset.

    ``read(offset, length)`` and ``iter_chunks(start, end)`` produce the bytes
    without materialising the whole file; ``content()`` returns all of it
    (meant for the small files of tests).
    """

    format: str
    seed: str
    size: int
    _parts: tuple[_Part, ...] = attrs.field(repr=False)
    _starts: tuple[int, ...] = attrs.field(repr=False)

    @property
    def mime_type(self) -> str:
        """The ``Content-Type`` of the file, e.g. ``image/png``."""
        return FORMATS[self.format][0]

    @property
    def extension(self) -> str:
        """The usual file extension, without the dot."""
        return FORMATS[self.format][1]

    @property
    def etag(self) -> str:
        """A strong entity tag (quoted) naming exactly these bytes."""
        digest = hashlib.sha256(f"{self.format}:{self.seed}:{self.size}".encode()).hexdigest()
        return f'"{digest[:32]}"'

    def read(self, offset: int, length: int) -> bytes:
        """Return up to *length* bytes from *offset* (fewer at the end of the file)."""
        if offset < 0 or length < 0:
            raise ConfigError("offset and length must not be negative")
        end = min(self.size, offset + length)
        out = bytearray()
        index = max(0, bisect.bisect_right(self._starts, offset) - 1)
        pos = offset
        while pos < end:
            part, start = self._parts[index], self._starts[index]
            inner = pos - start
            take = min(_part_len(part) - inner, end - pos)
            if isinstance(part, bytes):
                out += part[inner : inner + take]
            else:
                out += _filler(self.seed, part.stream_offset + inner, take)
            pos += take
            index += 1
        return bytes(out)

    def iter_chunks(
        self, start: int = 0, end: int | None = None, chunk_size: int = _CHUNK
    ) -> Iterator[bytes]:
        """Yield the bytes ``[start, end)`` in chunks of at most *chunk_size*."""
        stop = self.size if end is None else min(end, self.size)
        pos = start
        while pos < stop:
            data = self.read(pos, min(chunk_size, stop - pos))
            yield data
            pos += len(data)

    def content(self) -> bytes:
        """The whole file, for byte-exact assertions on small files."""
        return self.read(0, self.size)


def _blob(fmt: str, seed: str, parts: list[_Part]) -> MediaBlob:
    starts, pos = [], 0
    for part in parts:
        starts.append(pos)
        pos += _part_len(part)
    return MediaBlob(fmt, seed, pos, tuple(parts), tuple(starts))


# --- PNG -------------------------------------------------------------------


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_head(seed: str) -> bytes:
    side = 16
    rng = random.Random(f"{seed}:pixels")
    rows = b"".join(b"\x00" + rng.randbytes(side * 3) for _ in range(side))
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", zlib.compress(rows, 9))
    )


_PNG_IEND = _png_chunk(b"IEND", b"")
# "vpAd": ancillary, private, safe to copy; decoders skip it.
_PNG_PAD = b"vpAd"


def _png_parts(seed: str, size: int) -> list[_Part]:
    head = _png_head(seed)
    pad = size - len(head) - 12 - len(_PNG_IEND)
    crc = zlib.crc32(_PNG_PAD)
    for block in range(0, pad, _CHUNK):
        crc = zlib.crc32(_filler(seed, block, min(_CHUNK, pad - block)), crc)
    return [
        head + struct.pack(">I", pad) + _PNG_PAD,
        _Fill(0, pad),
        struct.pack(">I", crc) + _PNG_IEND,
    ]


# --- JPEG ------------------------------------------------------------------

# A complete 8x8 greyscale baseline JPEG: quantisation table of ones, a DC
# table whose only code "0" means "difference 0" and an AC table whose only
# code "0" means end-of-block, so the single block decodes to flat grey.
_JPEG_APP0 = b"\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
_JPEG_BODY = (
    b"\xff\xdb\x00\x43\x00"
    + b"\x01" * 64
    + b"\xff\xc0\x00\x0b\x08\x00\x08\x00\x08\x01\x01\x11\x00"
    + b"\xff\xc4\x00\x26"
    + bytes([0x00, 1, *[0] * 15, 0x00])  # DC table 0: one code of length 1, symbol 0
    + bytes([0x10, 1, *[0] * 15, 0x00])  # AC table 0: one code of length 1, EOB
    + b"\xff\xda\x00\x08\x01\x01\x00\x00\x3f\x00"
    + b"\x3f"
    + b"\xff\xd9"
)
_COM_MAX = 0xFFFF - 2


def _jpeg_parts(seed: str, size: int) -> list[_Part]:
    pad = size - 2 - len(_JPEG_APP0) - len(_JPEG_BODY)
    segments = -(-pad // (_COM_MAX + 4))
    payload = pad - 4 * segments
    parts: list[_Part] = [b"\xff\xd8" + _JPEG_APP0]
    stream = 0
    for index in range(segments):
        length = payload // segments + (1 if index < payload % segments else 0)
        parts.append(b"\xff\xfe" + struct.pack(">H", length + 2))
        if length:
            parts.append(_Fill(stream, length))
        stream += length
    parts.append(_JPEG_BODY)
    return parts


# --- WebP ------------------------------------------------------------------

# A 1x1 lossless (VP8L) image with alpha, the smallest common WebP probe.
_VP8L = bytes.fromhex("2f00000010071011118888fe07")
_WEBP_VP8X = b"VP8X" + struct.pack("<I", 10) + b"\x10\x00\x00\x00" + b"\x00" * 6
_WEBP_IMAGE = b"VP8L" + struct.pack("<I", len(_VP8L)) + _VP8L + b"\x00"
_WEBP_FIXED = 12 + len(_WEBP_VP8X) + len(_WEBP_IMAGE) + 8


def _webp_parts(seed: str, size: int) -> list[_Part]:
    pad = size - _WEBP_FIXED
    head = b"RIFF" + struct.pack("<I", size - 8) + b"WEBP" + _WEBP_VP8X + _WEBP_IMAGE
    # An unknown chunk after the image data: readers must skip it.
    return [head + b"vpAd" + struct.pack("<I", pad), _Fill(0, pad)]


# --- MP4 -------------------------------------------------------------------

_FTYP = struct.pack(">I", 32) + b"ftypisom" + struct.pack(">I", 0x200) + b"isomiso2avc1mp41"


def _mvhd() -> bytes:
    matrix = struct.pack(">9I", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)
    body = (
        struct.pack(">IIIII", 0, 0, 0, 1000, 8000)  # version/flags, times, timescale, duration
        + struct.pack(">IH", 0x10000, 0x100)  # rate 1.0, volume 1.0
        + b"\x00" * 10
        + matrix
        + b"\x00" * 24
        + struct.pack(">I", 1)  # next track id
    )
    return struct.pack(">I", 8 + len(body)) + b"mvhd" + body


_MOOV = struct.pack(">I", 8 + 108) + b"moov" + _mvhd()


def _mp4_parts(seed: str, size: int) -> list[_Part]:
    rest = size - len(_FTYP) - len(_MOOV)
    if rest <= 0xFFFFFFFF:
        header = struct.pack(">I", rest) + b"mdat"
    else:
        # Past 4 GiB a box needs the 64-bit "largesize" form.
        header = struct.pack(">I", 1) + b"mdat" + struct.pack(">Q", rest)
    return [_FTYP + _MOOV + header, _Fill(0, rest - len(header))]


# --- public helpers --------------------------------------------------------

_MIN_SIZES = {
    "png": len(_png_head("x")) + 12 + len(_PNG_IEND),
    "jpeg": 2 + len(_JPEG_APP0) + 4 + len(_JPEG_BODY),
    "webp": _WEBP_FIXED,
    "mp4": len(_FTYP) + len(_MOOV) + 8,
}
_BUILDERS = {"png": _png_parts, "jpeg": _jpeg_parts, "webp": _webp_parts, "mp4": _mp4_parts}


def min_size(fmt: str) -> int:
    """The smallest file of format *fmt* that :func:`make_blob` can build."""
    # A PNG's compressed pixels vary by seed; leave room for the worst case.
    return _MIN_SIZES[fmt] + (64 if fmt == "png" else 0)


def normalize_size(fmt: str, size: int) -> int:
    """The size :func:`make_blob` will produce when asked for *size*."""
    size = max(size, min_size(fmt))
    # RIFF pads every chunk to an even length, so a WebP file is always even.
    return size + (size % 2) if fmt == "webp" else size


def make_blob(fmt: str, seed: str, size: int) -> MediaBlob:
    """Build the blob of format *fmt* (``png``, ``jpeg``, ``webp``, ``mp4``).

    The bytes depend only on *seed* and the size (see :func:`normalize_size`).
    """
    if fmt not in _BUILDERS:
        raise ConfigError(f"unknown media format {fmt!r}")
    size = normalize_size(fmt, size)
    blob = _blob(fmt, seed, _BUILDERS[fmt](seed, size))
    assert blob.size == size, (fmt, blob.size, size)
    return blob
