"""Recognising media files by their first bytes, and checking that they are whole.

A CDN can answer 200 with an HTML page, and a connection can drop halfway
through a file whose first bytes are perfectly valid: neither the status code
nor the magic number alone says "this is the whole file".  :func:`sniff` names
the format from the head of a body; :func:`verify_complete` checks its end (or,
for ISO BMFF and Matroska, its chain of top-level boxes) by reading a few small
pieces, so a 1 GB video costs about as much as a 1 kB image.
"""

from __future__ import annotations

import enum
import io
import os
from typing import Protocol

from veo3dl.exceptions import IntegrityError, StorageError

__all__ = ["SNIFF_BYTES", "MediaKind", "describe_unwanted", "sniff", "verify_complete"]

SNIFF_BYTES = 64
"""How many leading bytes :func:`sniff` needs; more are ignored, fewer may not decide."""

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_PNG_IHDR = b"\x00\x00\x00\x0dIHDR"
_PNG_IEND = b"\x00\x00\x00\x00IEND\xaeB`\x82"
_JPEG_MAGIC = b"\xff\xd8\xff"
_JPEG_EOI = b"\xff\xd9"
_EBML_MAGIC = b"\x1a\x45\xdf\xa3"
_EBML_DOCTYPE = 0x4282
_MATROSKA_SEGMENT = 0x18538067
_WEBP_CHUNKS = (b"VP8 ", b"VP8L", b"VP8X")

# ISO BMFF brands (the ftyp box).  The HEIF structural brands say "some HEIF
# image" but not which codec, so another brand decides between AVIF and HEIC.
_AVIF_BRANDS = frozenset({"avif", "avis"})
_HEIC_BRANDS = frozenset({"heic", "heix", "hevc", "hevx", "heim", "heis", "hevm", "hevs"})
_HEIF_GENERIC_BRANDS = frozenset({"mif1", "msf1", "miaf"})
_MOV_BRANDS = frozenset({"qt  "})
_MP4_BRANDS = frozenset(
    {
        "isom", "iso2", "iso3", "iso4", "iso5", "iso6", "iso8", "iso9",
        "mp41", "mp42", "mp71", "avc1", "dash", "M4V ", "M4VH", "M4VP", "mmp4",
        "3gp4", "3gp5", "3gp6", "3gp7", "3g2a", "f4v ", "MSNV", "NDAS", "XAVC",
        "cmfc", "cmf2", "msdh", "msix",
    }
)  # fmt: skip
# An audio-only MP4 lists video-capable brands too; its major brand gives it away.
_AUDIO_BRANDS = frozenset({"M4A ", "M4B ", "M4P ", "F4A ", "F4B "})
_MAX_FTYP_SIZE = 4096

# A damaged or hostile file could claim millions of tiny boxes; a real one
# (even a long fragmented MP4) has far fewer top-level boxes than this.
_MAX_TOP_LEVEL = 100_000
_HINT_AGAIN = "the download was cut short or damaged; run again to fetch it anew"


class MediaKind(enum.Enum):
    """A media format veo3dl recognises, with its MIME type and file extension."""

    PNG = ("image/png", "png")
    JPEG = ("image/jpeg", "jpg")
    GIF = ("image/gif", "gif")
    WEBP = ("image/webp", "webp")
    AVIF = ("image/avif", "avif")
    HEIC = ("image/heic", "heic")
    MP4 = ("video/mp4", "mp4")
    MOV = ("video/quicktime", "mov")
    WEBM = ("video/webm", "webm")
    MKV = ("video/x-matroska", "mkv")

    mime_type: str
    extension: str

    def __init__(self, mime_type: str, extension: str) -> None:
        self.mime_type = mime_type
        self.extension = extension

    @property
    def is_video(self) -> bool:
        """True for the video formats, False for the image formats."""
        return self.mime_type.startswith("video/")

    def __str__(self) -> str:
        return self.mime_type


class SeekableReader(Protocol):
    """The part of a binary file object :func:`verify_complete` uses."""

    def seek(self, offset: int, whence: int = ..., /) -> int:
        """Move to ``offset`` and return the new position."""

    def tell(self) -> int:
        """Return the current position."""

    def read(self, size: int = ..., /) -> bytes:
        """Read up to ``size`` bytes."""


def _brand_kind(brands: list[str]) -> MediaKind | None:
    if brands[0] in _AUDIO_BRANDS:
        return None
    generic_heif = False
    for brand in brands:
        if brand in _AVIF_BRANDS:
            return MediaKind.AVIF
        if brand in _HEIC_BRANDS:
            return MediaKind.HEIC
        if brand in _MOV_BRANDS:
            return MediaKind.MOV
        if brand in _MP4_BRANDS:
            return MediaKind.MP4
        generic_heif = generic_heif or brand in _HEIF_GENERIC_BRANDS
    return MediaKind.HEIC if generic_heif else None


def _sniff_ftyp(head: bytes) -> MediaKind | None:
    if len(head) < 16 or head[4:8] != b"ftyp":
        return None
    box_size = int.from_bytes(head[0:4], "big")
    # 8 bytes of header, the major brand, the minor version, then 4-byte brands.
    if box_size < 16 or box_size > _MAX_FTYP_SIZE or box_size % 4:
        return None
    end = min(box_size, len(head))
    brands = [head[8:12]] + [head[i : i + 4] for i in range(16, end - 3, 4)]
    return _brand_kind([b.decode("latin-1") for b in brands])


def _vint_length(first: int) -> int | None:
    """Length in bytes of an EBML variable-size integer starting with ``first``."""
    if first == 0:
        return None  # longer than 8 bytes: not valid EBML
    return 9 - first.bit_length()


def _vint(buf: bytes, pos: int) -> tuple[int, int] | None:
    """Read the EBML vint at ``pos``: (raw value including the marker bit, length)."""
    if pos >= len(buf):
        return None
    length = _vint_length(buf[pos])
    if length is None or pos + length > len(buf):
        return None
    return int.from_bytes(buf[pos : pos + length], "big"), length


def _vint_size(raw: int, length: int) -> int | None:
    """The size a raw vint encodes, or None for Matroska's "unknown size"."""
    value = raw ^ (1 << (7 * length))
    return None if value == (1 << (7 * length)) - 1 else value


def _sniff_ebml(head: bytes) -> MediaKind | None:
    if not head.startswith(_EBML_MAGIC):
        return None
    header_size = _vint(head, 4)
    if header_size is None:
        return None
    pos = 4 + header_size[1]
    size = _vint_size(*header_size)
    end = len(head) if size is None else min(len(head), pos + size)
    while pos < end:
        element = _vint(head, pos)
        if element is None or element[1] > 4:
            return None
        length = _vint(head, pos + element[1])
        if length is None:
            return None
        data_start = pos + element[1] + length[1]
        data_size = _vint_size(*length)
        if data_size is None:
            return None
        if element[0] == _EBML_DOCTYPE:
            doctype = head[data_start : data_start + data_size].rstrip(b"\x00")
            return {b"webm": MediaKind.WEBM, b"matroska": MediaKind.MKV}.get(doctype)
        pos = data_start + data_size
    return None


def sniff(head: bytes) -> MediaKind | None:
    """Name the media format of a body from its first bytes, or None if it is not one.

    ``head`` should hold the first :data:`SNIFF_BYTES` bytes (or the whole body
    when it is shorter).  Only formats a media library can hold are
    recognised; lookalikes (a RIFF WAVE file, text starting with "GIF", an
    audio-only MP4) are not.
    """
    if head.startswith(_PNG_MAGIC):
        return MediaKind.PNG
    if head.startswith(_JPEG_MAGIC):
        return MediaKind.JPEG
    if head.startswith((b"GIF87a", b"GIF89a")):
        return MediaKind.GIF
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP" and head[12:16] in _WEBP_CHUNKS:
        return MediaKind.WEBP
    return _sniff_ftyp(head) or _sniff_ebml(head)


def _is_text(data: bytes) -> bool:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        # The head may end in the middle of a character.
        if exc.reason != "unexpected end of data":
            return False
        text = data[: exc.start].decode("utf-8")
    return all(ch.isprintable() or ch in "\t\r\n" for ch in text)


def describe_unwanted(head: bytes) -> str:
    """Say in a few words what a body holds, for a message about what arrived instead.

    Returns "empty body", "an HTML page", "JSON", "XML", "text starting ...",
    or "unknown bytes (first bytes 3c21...)".  Media is named by its MIME type.
    """
    if not head:
        return "empty body"
    kind = sniff(head)
    if kind is not None:
        return f"{kind.mime_type} media"
    text = head.removeprefix(b"\xef\xbb\xbf").lstrip(b" \t\r\n\x0c").lower()
    if not text:
        return "a blank body (whitespace only)"
    # Google prefixes some JSON with ")]}'" against cross-site script inclusion.
    if text.startswith((b"{", b"[", b")]}'")):
        return "JSON"
    if text.startswith(b"<!doctype html") or any(
        tag in text for tag in (b"<html", b"<head", b"<body")
    ):
        return "an HTML page"
    if text.startswith(b"<?xml") or (text.startswith(b"<") and text[1:2].isalpha()):
        return "XML"
    if _is_text(head):
        preview = head.decode("utf-8", "ignore").strip()[:24]
        return f"text starting {preview!r}"
    return f"unknown bytes (first bytes {head[:16].hex()})"


def _read_at(fh: SeekableReader, offset: int, count: int) -> bytes:
    fh.seek(offset)
    chunks: list[bytes] = []
    while count > 0:
        chunk = fh.read(count)
        if not chunk:
            break
        chunks.append(chunk)
        count -= len(chunk)
    return b"".join(chunks)


def _fail(message: str, item: str | None) -> IntegrityError:
    return IntegrityError(message, item=item, hint=_HINT_AGAIN)


def _verify_tail(fh: SeekableReader, size: int, kind: MediaKind, item: str | None) -> None:
    """PNG, JPEG and GIF end with a fixed trailer; a cut file does not."""
    trailer = {MediaKind.PNG: _PNG_IEND, MediaKind.JPEG: _JPEG_EOI, MediaKind.GIF: b";"}[kind]
    if kind is MediaKind.PNG and _read_at(fh, 8, 8) != _PNG_IHDR:
        raise _fail("damaged PNG: it does not start with an IHDR chunk", item)
    if size < 8 + len(trailer) or _read_at(fh, size - len(trailer), len(trailer)) != trailer:
        what = {MediaKind.PNG: "the IEND chunk", MediaKind.JPEG: "FF D9", MediaKind.GIF: "3B"}
        raise _fail(
            f"truncated {kind.extension.upper()}: the file ({size} bytes) "
            f"does not end with {what[kind]}",
            item,
        )


def _verify_riff(fh: SeekableReader, size: int, item: str | None) -> None:
    riff_size = int.from_bytes(_read_at(fh, 4, 4), "little")
    expected = riff_size + 8
    # RIFF pads an odd-sized chunk with one byte that its size does not count.
    if size == expected or (riff_size % 2 and size == expected + 1):
        return
    if size < expected:
        raise _fail(f"truncated WebP: RIFF declares {expected} bytes, the file has {size}", item)
    raise _fail(f"damaged WebP: {size - expected} bytes follow the RIFF data", item)


def _verify_boxes(fh: SeekableReader, size: int, kind: MediaKind, item: str | None) -> None:
    """Walk the top-level ISO BMFF boxes: they must chain exactly to the end."""
    seen: set[str] = set()
    offset = 0
    count = 0
    while offset < size:
        count += 1
        if count > _MAX_TOP_LEVEL:
            raise _fail(f"damaged {kind.extension}: more than {_MAX_TOP_LEVEL} boxes", item)
        header = _read_at(fh, offset, 16)
        if len(header) < 8:
            raise _fail(f"truncated {kind.extension}: box header cut at offset {offset}", item)
        box_size = int.from_bytes(header[0:4], "big")
        box_type = header[4:8].decode("latin-1")
        if not all(" " <= ch <= "~" for ch in box_type):
            raise _fail(f"damaged {kind.extension}: no valid box at offset {offset}", item)
        header_size = 8
        if box_size == 1:  # a 64-bit "largesize" follows the type
            if len(header) < 16:
                raise _fail(f"truncated {kind.extension}: box header cut at offset {offset}", item)
            box_size = int.from_bytes(header[8:16], "big")
            header_size = 16
        elif box_size == 0:  # the box runs to the end of the file
            box_size = size - offset
        if box_size < header_size:
            raise _fail(
                f"damaged {kind.extension}: box {box_type!r} at offset {offset} "
                f"has impossible size {box_size}",
                item,
            )
        if offset + box_size > size:
            raise _fail(
                f"truncated {kind.extension}: box {box_type!r} at offset {offset} declares "
                f"{box_size} bytes but only {size - offset} remain",
                item,
            )
        seen.add(box_type)
        offset += box_size
    # Requiring mdat as well as moov catches a cut that falls exactly between
    # two boxes.  A HEIF image may keep its data inside meta (idat), so only
    # meta is required there.
    required = {"moov", "mdat"} if kind.is_video else {"meta"}
    missing = sorted(required - seen)
    if missing:
        raise _fail(f"incomplete {kind.extension}: no {' or '.join(missing)} box", item)


def _verify_ebml(fh: SeekableReader, size: int, kind: MediaKind, item: str | None) -> None:
    """Walk the top-level EBML elements until one of unknown size.

    Live-written Matroska/WebM often gives its Segment an "unknown" size,
    which means "up to the end of the file": such a file's end cannot be
    checked without parsing clusters, so this check then stops there.
    """
    seen: set[int] = set()
    offset = 0
    count = 0
    while offset < size:
        count += 1
        if count > _MAX_TOP_LEVEL:
            raise _fail(f"damaged {kind.extension}: more than {_MAX_TOP_LEVEL} elements", item)
        header = _read_at(fh, offset, 12)
        element = _vint(header, 0)
        length = _vint(header, element[1]) if element and element[1] <= 4 else None
        if element is None or length is None:
            if size - offset < 12:
                raise _fail(f"truncated {kind.extension}: element cut at offset {offset}", item)
            raise _fail(f"damaged {kind.extension}: no valid element at offset {offset}", item)
        seen.add(element[0])
        data_size = _vint_size(*length)
        if data_size is None:
            break
        end = offset + element[1] + length[1] + data_size
        if end > size:
            raise _fail(
                f"truncated {kind.extension}: element at offset {offset} needs {end} bytes, "
                f"the file has {size}",
                item,
            )
        offset = end
    if _MATROSKA_SEGMENT not in seen:
        raise _fail(f"incomplete {kind.extension}: no Segment element", item)


def _verify_open(fh: SeekableReader, kind: MediaKind, size: int | None, item: str | None) -> None:
    actual = fh.seek(0, io.SEEK_END)
    if size is not None and size != actual:
        raise _fail(f"the file has {actual} bytes but {size} were expected", item)
    head = _read_at(fh, 0, SNIFF_BYTES)
    found = sniff(head)
    if found is not kind:
        what = describe_unwanted(head)
        raise _fail(f"expected {kind.mime_type} but the file holds {what}", item)
    if kind in (MediaKind.PNG, MediaKind.JPEG, MediaKind.GIF):
        _verify_tail(fh, actual, kind, item)
    elif kind is MediaKind.WEBP:
        _verify_riff(fh, actual, item)
    elif kind in (MediaKind.WEBM, MediaKind.MKV):
        _verify_ebml(fh, actual, kind, item)
    else:
        _verify_boxes(fh, actual, kind, item)


def verify_complete(
    source: str | os.PathLike[str] | SeekableReader,
    kind: MediaKind,
    size: int | None = None,
    *,
    item: str | None = None,
) -> None:
    """Check that a file of ``kind`` is whole, raising :class:`IntegrityError` if not.

    ``source`` is a path or a readable, seekable binary file object (its
    position is restored afterwards).  ``size``, when given, is the length the
    file must have (e.g. what the server announced).  Only headers and
    trailers are read:

    - PNG must start with IHDR and end with IEND; JPEG must end with FF D9;
      GIF with 3B (trailing bytes after the trailer count as damage);
    - WebP's RIFF size must match the file size (one pad byte allowed);
    - MP4/MOV/AVIF/HEIC top-level boxes must chain exactly to the end, and
      include moov and mdat (video) or meta (image);
    - WebM/MKV top-level elements must chain to the end and include a
      Segment, but a Segment of unknown size is taken on trust.
    """
    if isinstance(source, (str, os.PathLike)):
        try:
            with open(source, "rb") as fh:
                _verify_open(fh, kind, size, item)
        except OSError as exc:
            raise StorageError(
                f"could not read {os.fsdecode(source)} to check it: {exc.strerror or exc}",
                path=os.fsdecode(source),
                item=item,
            ) from exc
        return
    position = source.tell()
    try:
        _verify_open(source, kind, size, item)
    finally:
        source.seek(position)
