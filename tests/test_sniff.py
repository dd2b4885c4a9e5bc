"""Format sniffing and completeness checks (veo3dl._sniff)."""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest

from veo3dl._sniff import SNIFF_BYTES, MediaKind, describe_unwanted, sniff, verify_complete
from veo3dl.exceptions import IntegrityError, StorageError

# --- builders for small but structurally valid files ---------------------------------------


def png_file() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data)
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00\x00"))
        + chunk(b"IEND", b"")
    )


def jpeg_file() -> bytes:
    app0 = b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    return (
        b"\xff\xd8\xff\xe0"
        + struct.pack(">H", len(app0) + 2)
        + app0
        + b"\xff\xda\x00\x08\x01\x01\x00\x00\x3f\x00"
        + b"\x12\x34\xff\x00\x56"
        + b"\xff\xd9"
    )


def gif_file() -> bytes:
    return (
        b"GIF89a"
        + struct.pack("<HHBBB", 1, 1, 0, 0, 0)
        + b"\x2c"
        + struct.pack("<HHHHB", 0, 0, 1, 1, 0)
        + b"\x02\x02\x44\x01\x00"
        + b"\x3b"
    )


def webp_file(payload: bytes = b"\x2f\x00\x00\x00\x00\x07") -> bytes:
    chunk = b"VP8L" + struct.pack("<I", len(payload)) + payload
    if len(payload) % 2:
        chunk += b"\x00"
    body = b"WEBP" + chunk
    return b"RIFF" + struct.pack("<I", len(body)) + body


def box(kind: bytes, payload: bytes = b"") -> bytes:
    return struct.pack(">I", 8 + len(payload)) + kind + payload


def ftyp(major: bytes, *compatible: bytes) -> bytes:
    return box(b"ftyp", major + b"\x00\x00\x02\x00" + b"".join(compatible))


def mp4_file(major: bytes = b"isom", *compatible: bytes) -> bytes:
    compatible = compatible or (b"isom", b"iso2", b"avc1", b"mp41")
    return (
        ftyp(major, *compatible)
        + box(b"free")
        + box(b"mdat", bytes(range(256)) * 8)
        + box(b"moov", box(b"mvhd", b"\x00" * 100))
    )


def avif_file() -> bytes:
    return (
        ftyp(b"avif", b"avif", b"mif1", b"miaf")
        + box(b"meta", b"\x00" * 40)
        + box(b"mdat", b"x" * 50)
    )


def ebml(element_id: bytes, data: bytes) -> bytes:
    assert len(data) < 127
    return element_id + bytes([0x80 | len(data)]) + data


def ebml_header(doctype: bytes) -> bytes:
    return ebml(
        b"\x1a\x45\xdf\xa3",
        b"\x42\x86\x81\x01\x42\xf7\x81\x01\x42\xf2\x81\x04\x42\xf3\x81\x08"
        + ebml(b"\x42\x82", doctype)
        + b"\x42\x87\x81\x04\x42\x85\x81\x02",
    )


def webm_file(doctype: bytes = b"webm", *, unknown_size: bool = False) -> bytes:
    content = (
        ebml(b"\x15\x49\xa9\x66", b"\x2a\xd7\xb1\x83\x0f\x42\x40")
        + b"\x1f\x43\xb6\x75"
        + (b"\x01\x00\x00\x00\x00\x00\x00\x10" + b"c" * 16)
    )
    size = (
        b"\x01\xff\xff\xff\xff\xff\xff\xff"
        if unknown_size
        else b"\x01" + len(content).to_bytes(7, "big")
    )
    return ebml_header(doctype) + b"\x18\x53\x80\x67" + size + content


COMPLETE: dict[MediaKind, Callable[[], bytes]] = {
    MediaKind.PNG: png_file,
    MediaKind.JPEG: jpeg_file,
    MediaKind.GIF: gif_file,
    MediaKind.WEBP: webp_file,
    MediaKind.AVIF: avif_file,
    MediaKind.HEIC: lambda: (
        ftyp(b"heic", b"mif1", b"heic") + box(b"meta", b"\x00" * 8) + box(b"mdat", b"h")
    ),
    MediaKind.MP4: mp4_file,
    MediaKind.MOV: lambda: mp4_file(b"qt  ", b"qt  "),
    MediaKind.WEBM: webm_file,
    MediaKind.MKV: lambda: webm_file(b"matroska"),
}


# --- sniffing ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(MediaKind))
def test_sniff_recognises_each_kind_from_its_head(kind: MediaKind) -> None:
    data = COMPLETE[kind]()
    assert sniff(data[:SNIFF_BYTES]) is kind
    assert sniff(data) is kind  # extra bytes are ignored


@pytest.mark.parametrize(
    ("kind", "mime", "ext"),
    [
        (MediaKind.PNG, "image/png", "png"),
        (MediaKind.JPEG, "image/jpeg", "jpg"),
        (MediaKind.MP4, "video/mp4", "mp4"),
        (MediaKind.MOV, "video/quicktime", "mov"),
        (MediaKind.WEBM, "video/webm", "webm"),
        (MediaKind.MKV, "video/x-matroska", "mkv"),
        (MediaKind.AVIF, "image/avif", "avif"),
        (MediaKind.HEIC, "image/heic", "heic"),
    ],
)
def test_media_kind_names(kind: MediaKind, mime: str, ext: str) -> None:
    assert (kind.mime_type, kind.extension) == (mime, ext)
    assert kind.is_video == mime.startswith("video/")


@pytest.mark.parametrize(
    ("head", "kind"),
    [
        (b"GIF87a\x01\x00\x01\x00", MediaKind.GIF),
        (ftyp(b"mp42", b"isom"), MediaKind.MP4),
        (ftyp(b"M4V ", b"M4V "), MediaKind.MP4),
        (ftyp(b"dash", b"iso6"), MediaKind.MP4),
        (ftyp(b"avis", b"avis", b"msf1"), MediaKind.AVIF),
        (ftyp(b"mif1", b"mif1", b"avif"), MediaKind.AVIF),  # generic HEIF major brand
        (ftyp(b"mif1", b"mif1", b"heic"), MediaKind.HEIC),
        (ftyp(b"heix", b"mif1"), MediaKind.HEIC),
        (ftyp(b"zzzz", b"zzzz", b"isom"), MediaKind.MP4),  # unknown major, known compatible
    ],
)
def test_sniff_variants(head: bytes, kind: MediaKind) -> None:
    assert sniff(head) is kind


@pytest.mark.parametrize(
    "head",
    [
        b"",
        b"<!DOCTYPE html><html><head><title>Error</title>",
        b'{"error": {"code": 403}}',
        b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>ExpiredToken</Code>",
        b"RIFF\x24\x00\x00\x00WAVEfmt \x10\x00\x00\x00",
        b"RIFF\x24\x00\x00\x00WEBPjunk",
        b"GIF is a format from 1987",
        b"GIF8",
        b"\x89PNG",  # cut before the signature ends
        b"\xff\xd8",
        ftyp(b"M4A ", b"M4A ", b"isom", b"mp42"),  # audio only
        ftyp(b"zzzz", b"yyyy"),
        b"\x00\x00\x00\x05ftypisom\x00\x00\x00\x00",  # ftyp box too small to be real
        b"xxxxftypisom",
        ebml_header(b"mkvbogus"),
        b"\x1a\x45\xdf\xa3\x00",
        b"\x00" * 64,
    ],
)
def test_sniff_rejects_lookalikes(head: bytes) -> None:
    assert sniff(head) is None


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b"", "empty body"),
        (b"<!DOCTYPE html>\n<html lang=en>", "an HTML page"),
        (b"\n  <html><body>Sorry</body>", "an HTML page"),
        (b'{"error": {"code": 429}}', "JSON"),
        (b")]}'\n[1,2]", "JSON"),
        (b"\xef\xbb\xbf[]", "JSON"),
        (b"<?xml version='1.0'?><Error/>", "XML"),
        (b"<Error><Code>AccessDenied</Code></Error>", "XML"),
        (b"\x00\x01\x02\xfe", "unknown bytes (first bytes 000102fe)"),
        (b"<!\x00\x00\x80", "unknown bytes (first bytes 3c21000080)"),
    ],
)
def test_describe_unwanted(head: bytes, expected: str) -> None:
    assert describe_unwanted(head) == expected


def test_describe_unwanted_text_and_media() -> None:
    assert describe_unwanted(b"Forbidden") == "text starting 'Forbidden'"
    assert describe_unwanted(png_file()[:SNIFF_BYTES]) == "image/png media"
    assert "whitespace" in describe_unwanted(b"  \n ")
    assert describe_unwanted(bytes(range(200))).endswith(f"{bytes(range(16)).hex()})")


# --- completeness ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(MediaKind))
def test_complete_files_pass(tmp_path: Path, kind: MediaKind) -> None:
    data = COMPLETE[kind]()
    path = tmp_path / f"f.{kind.extension}"
    path.write_bytes(data)
    verify_complete(path, kind)
    verify_complete(str(path), kind, len(data))
    verify_complete(io.BytesIO(data), kind)


@pytest.mark.parametrize("kind", [k for k in MediaKind if k not in (MediaKind.WEBM, MediaKind.MKV)])
@pytest.mark.parametrize("cut", [1, 2, 7, 13, 100])
def test_truncated_files_fail(kind: MediaKind, cut: int) -> None:
    data = COMPLETE[kind]()[:-cut]
    with pytest.raises(IntegrityError) as info:
        verify_complete(io.BytesIO(data), kind, item="CAMa123")
    assert info.value.item == "CAMa123"
    assert info.value.hint


@pytest.mark.parametrize("cut", [1, 5, 16, 20])
def test_truncated_webm_with_known_segment_size_fails(cut: int) -> None:
    with pytest.raises(IntegrityError, match="truncated"):
        verify_complete(io.BytesIO(webm_file()[:-cut]), MediaKind.WEBM)


def test_webm_of_unknown_segment_size_is_taken_on_trust() -> None:
    # The documented limit: with an unknown Segment size the end cannot be checked.
    verify_complete(io.BytesIO(webm_file(unknown_size=True)[:-5]), MediaKind.WEBM)


def test_webm_without_segment_fails() -> None:
    with pytest.raises(IntegrityError, match="Segment"):
        verify_complete(io.BytesIO(ebml_header(b"webm")), MediaKind.WEBM)


def test_truncation_messages_name_the_problem() -> None:
    with pytest.raises(IntegrityError, match="IEND"):
        verify_complete(io.BytesIO(png_file()[:-3]), MediaKind.PNG)
    with pytest.raises(IntegrityError, match="FF D9"):
        verify_complete(io.BytesIO(jpeg_file()[:-1]), MediaKind.JPEG)
    with pytest.raises(IntegrityError, match="RIFF declares"):
        verify_complete(io.BytesIO(webp_file()[:-2]), MediaKind.WEBP)
    with pytest.raises(IntegrityError, match=r"'moov' at offset .* declares"):
        verify_complete(io.BytesIO(mp4_file()[:-10]), MediaKind.MP4)


def test_mp4_cut_exactly_between_boxes_fails() -> None:
    data = ftyp(b"isom", b"isom") + box(b"moov", b"\x00" * 20) + box(b"mdat", b"x" * 30)
    verify_complete(io.BytesIO(data), MediaKind.MP4)
    with pytest.raises(IntegrityError, match="no mdat"):
        verify_complete(io.BytesIO(data[: -(8 + 30)]), MediaKind.MP4)


def test_mp4_largesize_and_size_zero_boxes() -> None:
    payload = b"v" * 300
    large = struct.pack(">I", 1) + b"mdat" + struct.pack(">Q", 16 + len(payload)) + payload
    head = ftyp(b"isom", b"isom") + box(b"moov", b"\x00" * 20)
    verify_complete(io.BytesIO(head + large), MediaKind.MP4)
    with pytest.raises(IntegrityError, match="truncated"):
        verify_complete(io.BytesIO(head + large[:-1]), MediaKind.MP4)
    to_end = struct.pack(">I", 0) + b"mdat" + payload
    verify_complete(io.BytesIO(head + to_end), MediaKind.MP4)
    verify_complete(io.BytesIO(head + to_end[:-100]), MediaKind.MP4)  # size 0: nothing to check
    with pytest.raises(IntegrityError, match="impossible size"):
        verify_complete(io.BytesIO(head + struct.pack(">I", 4) + b"mdat"), MediaKind.MP4)


def test_mp4_with_trailing_garbage_fails() -> None:
    with pytest.raises(IntegrityError, match="no valid box"):
        verify_complete(
            io.BytesIO(mp4_file() + b"\x00\x00\x00\x10\xff\xfe\x00\x01" + b"z" * 8), MediaKind.MP4
        )
    with pytest.raises(IntegrityError, match="truncated"):
        verify_complete(io.BytesIO(mp4_file() + b"\x00\x00"), MediaKind.MP4)


def test_heif_needs_meta() -> None:
    data = ftyp(b"avif", b"avif") + box(b"mdat", b"x")
    with pytest.raises(IntegrityError, match="no meta"):
        verify_complete(io.BytesIO(data), MediaKind.AVIF)


def test_webp_padding_rule() -> None:
    body = b"WEBP" + b"VP8L" + struct.pack("<I", 5) + b"\x2f\x00\x00\x00\x00"  # odd, unpadded
    odd = b"RIFF" + struct.pack("<I", len(body)) + body
    assert len(body) % 2
    verify_complete(io.BytesIO(odd), MediaKind.WEBP)
    verify_complete(io.BytesIO(odd + b"\x00"), MediaKind.WEBP)  # the one pad byte
    with pytest.raises(IntegrityError, match="follow the RIFF data"):
        verify_complete(io.BytesIO(odd + b"\x00\x00"), MediaKind.WEBP)
    with pytest.raises(IntegrityError, match="follow the RIFF data"):
        verify_complete(io.BytesIO(webp_file() + b"\x00"), MediaKind.WEBP)


def test_png_trailing_bytes_and_missing_ihdr_fail() -> None:
    with pytest.raises(IntegrityError):
        verify_complete(io.BytesIO(png_file() + b"junk"), MediaKind.PNG)
    bad = b"\x89PNG\r\n\x1a\n" + png_file()[33:]  # IHDR removed
    with pytest.raises(IntegrityError, match="IHDR"):
        verify_complete(io.BytesIO(bad), MediaKind.PNG)


def test_wrong_kind_or_not_media_fails() -> None:
    with pytest.raises(IntegrityError, match=r"expected image/png .* an HTML page"):
        verify_complete(io.BytesIO(b"<html><body>busy</body></html>"), MediaKind.PNG)
    with pytest.raises(IntegrityError, match="image/jpeg"):
        verify_complete(io.BytesIO(jpeg_file()), MediaKind.PNG)
    with pytest.raises(IntegrityError, match="empty body"):
        verify_complete(io.BytesIO(b""), MediaKind.MP4)


def test_expected_size_is_checked() -> None:
    data = png_file()
    with pytest.raises(IntegrityError, match=f"has {len(data)} bytes but {len(data) + 1}"):
        verify_complete(io.BytesIO(data), MediaKind.PNG, len(data) + 1)


def test_file_object_position_is_restored() -> None:
    fh = io.BytesIO(mp4_file())
    fh.seek(17)
    verify_complete(fh, MediaKind.MP4)
    assert fh.tell() == 17


def test_missing_path_is_a_storage_error(tmp_path: Path) -> None:
    with pytest.raises(StorageError) as info:
        verify_complete(tmp_path / "nope.png", MediaKind.PNG, item="CAMa1")
    assert info.value.item == "CAMa1"
    assert info.value.path == str(tmp_path / "nope.png")


class CountingReader(io.RawIOBase):
    """A sparse 'file' that records how many bytes were read from it."""

    def __init__(self, layout: dict[int, bytes], size: int) -> None:
        self.layout, self.size, self.pos, self.read_total = layout, size, 0, 0

    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        self.pos = {0: offset, 1: self.pos + offset, 2: self.size + offset}[whence]
        return self.pos

    def tell(self) -> int:
        return self.pos

    def read(self, size: int = -1) -> bytes:
        end = self.size if size < 0 else min(self.size, self.pos + size)
        out = bytearray(end - self.pos)
        for start, data in self.layout.items():
            lo, hi = max(start, self.pos), min(start + len(data), end)
            if lo < hi:
                out[lo - self.pos : hi - self.pos] = data[lo - start : hi - start]
        self.read_total += len(out)
        self.pos = end
        return bytes(out)


def test_a_huge_video_is_checked_by_reading_only_headers() -> None:
    gib = 1 << 30
    head = ftyp(b"isom", b"isom") + box(b"moov", b"\x00" * 20)
    mdat = struct.pack(">I", 1) + b"mdat" + struct.pack(">Q", gib)
    reader = CountingReader({0: head + mdat}, len(head) + gib)
    verify_complete(reader, MediaKind.MP4)
    assert reader.read_total < 1000
    reader.size -= 1
    with pytest.raises(IntegrityError, match="truncated"):
        verify_complete(reader, MediaKind.MP4)
