"""The emulator's media files: structurally valid, deterministic, readable by range."""

from __future__ import annotations

import io
import struct
import zlib

import PIL.Image
import pytest

from veo3dl.testing import FlowEmulator
from veo3dl.testing._media import make_blob, min_size, normalize_size


def png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, []
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert crc == zlib.crc32(kind + body), kind
        chunks.append((kind, body))
        pos += 12 + length
    assert pos == len(data)
    return chunks


def jpeg_segments(data: bytes) -> list[int]:
    assert data[:3] == b"\xff\xd8\xff"
    assert data[-2:] == b"\xff\xd9"
    pos, markers = 2, []
    while True:
        assert data[pos] == 0xFF
        marker = data[pos + 1]
        markers.append(marker)
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        pos += 2 + length
        if marker == 0xDA:  # start of scan: entropy data up to EOI
            break
    assert data.index(b"\xff\xd9", pos) == len(data) - 2
    return markers


def riff_chunks(data: bytes) -> list[bytes]:
    assert data[:4] == b"RIFF"
    assert data[8:12] == b"WEBP"
    assert struct.unpack("<I", data[4:8])[0] == len(data) - 8
    pos, kinds = 12, []
    while pos < len(data):
        kind = data[pos : pos + 4]
        (size,) = struct.unpack("<I", data[pos + 4 : pos + 8])
        kinds.append(kind)
        pos += 8 + size + (size & 1)
    assert pos == len(data)
    return kinds


def mp4_boxes(read, size: int) -> list[bytes]:
    pos, kinds = 0, []
    while pos < size:
        head = read(pos, 16)
        (box,) = struct.unpack(">I", head[:4])
        kind = head[4:8]
        if box == 1:
            (box,) = struct.unpack(">Q", head[8:16])
        assert box >= 8
        kinds.append(kind)
        pos += box
    assert pos == size
    return kinds


@pytest.mark.parametrize("size", [min_size("png"), 40_000, 160_001])
def test_png_is_valid(size: int) -> None:
    data = make_blob("png", "seed", size).content()
    assert len(data) == size
    chunks = png_chunks(data)
    kinds = [kind for kind, _ in chunks]
    assert kinds == [b"IHDR", b"IDAT", b"vpAd", b"IEND"]
    width, height = struct.unpack(">II", chunks[0][1][:8])
    assert (width, height) == (16, 16)
    assert len(zlib.decompress(chunks[1][1])) == 16 * (1 + 16 * 3)


@pytest.mark.parametrize("size", [min_size("jpeg"), 40_000, 65_541, 200_003])
def test_jpeg_is_valid(size: int) -> None:
    data = make_blob("jpeg", "seed", size).content()
    assert len(data) == size
    markers = jpeg_segments(data)
    assert markers[0] == 0xE0  # JFIF right after SOI
    assert 0xFE in markers
    assert 0xC0 in markers
    assert 0xC4 in markers
    assert markers[-1] == 0xDA


@pytest.mark.parametrize("size", [min_size("webp"), 40_000, 99_999])
def test_webp_is_valid(size: int) -> None:
    blob = make_blob("webp", "seed", size)
    data = blob.content()
    assert len(data) == normalize_size("webp", size) == blob.size
    assert len(data) % 2 == 0
    assert riff_chunks(data) == [b"VP8X", b"VP8L", b"vpAd"]


def test_mp4_is_valid() -> None:
    blob = make_blob("mp4", "seed", 700_000)
    data = blob.content()
    assert data[4:12] == b"ftypisom"
    assert mp4_boxes(lambda pos, n: data[pos : pos + n], len(data)) == [b"ftyp", b"moov", b"mdat"]
    assert data[36:40] == b"moov"
    assert data[44:48] == b"mvhd"


def test_mp4_past_4_gib_uses_largesize_without_building_it() -> None:
    size = 5 * 1024**3
    blob = make_blob("mp4", "seed", size)
    assert blob.size == size
    assert mp4_boxes(blob.read, size) == [b"ftyp", b"moov", b"mdat"]
    assert len(blob.read(size - 10, 100)) == 10


@pytest.mark.parametrize("fmt", ["png", "jpeg", "webp", "mp4"])
def test_same_seed_same_bytes_and_ranges_match(fmt: str) -> None:
    one = make_blob(fmt, "a", 300_000)
    two = make_blob(fmt, "a", 300_000)
    other = make_blob(fmt, "b", 300_000)
    full = one.content()
    assert full == two.content()
    assert full != other.content()
    assert one.etag == two.etag != other.etag
    for offset, length in [(0, 1), (7, 100), (65_530, 20), (131_071, 70_000), (299_990, 50)]:
        assert one.read(offset, length) == full[offset : offset + length]
    assert b"".join(one.iter_chunks(1000, 250_000, chunk_size=65_537)) == full[1000:250_000]
    assert one.read(300_000, 10) == b""


def test_blob_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError):
        make_blob("gif", "a", 1000)
    with pytest.raises(ValueError):
        make_blob("png", "a", 1000).read(-1, 5)
    assert make_blob("png", "a", 1).size == min_size("png")


def test_library_rotates_formats_with_matching_types() -> None:
    emulator = FlowEmulator(
        items=24, videos=4, image_bytes=(5_000, 9_000), video_bytes=(9_000, 9_999)
    )
    seen = set()
    magic = {
        "image/png": b"\x89PNG",
        "image/jpeg": b"\xff\xd8\xff",
        "image/webp": b"RIFF",
        "video/mp4": b"\x00\x00\x00\x20ftyp",
    }
    for item in emulator.items:
        data = emulator.content(item.name)
        assert len(data) == item.size
        assert data.startswith(magic[item.mime_type])
        assert (item.media_type == "VIDEO") == (item.mime_type == "video/mp4")
        seen.add((item.mime_type, item.shape))
    assert {
        ("image/png", "image"),
        ("image/png", "userUploadedImage"),
        ("image/jpeg", "image"),
        ("image/jpeg", "userUploadedImage"),
        ("image/webp", "image"),
        ("image/webp", "userUploadedImage"),
        ("video/mp4", "video"),
    } <= seen


def test_images_decode_with_pillow() -> None:
    for fmt in ("png", "jpeg", "webp"):
        with PIL.Image.open(io.BytesIO(make_blob(fmt, "p", 50_000).content())) as image:
            image.load()
            assert image.size[0] >= 1
