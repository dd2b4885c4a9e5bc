"""Safe names, destination paths (veo3dl._paths), the atomic writer and part-file cleanup (veo3dl._atomic)."""

from __future__ import annotations

import errno
import hashlib
import os
import subprocess
import sys
import unicodedata
from datetime import datetime, timedelta, timezone
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from veo3dl._atomic import AtomicFile, clean_stale_parts, file_matches
from veo3dl._paths import (
    DEFAULT_TEMPLATE,
    digest,
    fold_path,
    render_destination,
    resolve_inside,
    safe_component,
    unique_stem,
    validate_template,
)
from veo3dl._sniff import SNIFF_BYTES, MediaKind, sniff
from veo3dl.exceptions import ConfigError, IntegrityError, StorageError, UnsafePathError

UTC = timezone.utc
WHEN = datetime(2025, 10, 29, 13, 56, 15, tzinfo=UTC)
PNG_HEAD = b"\x89PNG\r\n\x1a\n"
FORBIDDEN = set('/\\<>:"|?*')


def is_unusable(text: str) -> bool:
    """What safe_component must reject: nothing but dots, whitespace and invisible controls."""
    return all(
        ch == "." or ch.isspace() or unicodedata.category(ch) in ("Cc", "Cs", "Zl", "Zp", "Cf")
        for ch in unicodedata.normalize("NFC", text)
    )


# --- safe_component --------------------------------------------------------------------------


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=400), st.integers(min_value=16, max_value=255))
def test_safe_component_output_is_always_safe(text: str, max_bytes: int) -> None:
    try:
        out = safe_component(text, max_bytes=max_bytes)
    except UnsafePathError:
        assert is_unusable(text)
        return
    assert out not in ("", ".", "..")
    assert not FORBIDDEN & set(out)
    assert all(unicodedata.category(ch) not in ("Cc", "Cs") for ch in out)
    assert len(out.encode("utf-8")) <= max_bytes
    assert out == out.strip()
    assert not out.startswith(".")
    assert not out.endswith(".")
    assert safe_component(text, max_bytes=max_bytes) == out  # deterministic


@settings(max_examples=400, deadline=None)
@given(
    st.lists(
        st.text(alphabet="ab/\\:.~ \x00\u0301\u00e9CON", max_size=30),
        min_size=2,
        max_size=6,
        unique=True,
    ),
    st.integers(min_value=16, max_value=24),
)
def test_distinct_inputs_never_share_a_name(texts: list[str], max_bytes: int) -> None:
    # A tiny alphabet of characters that get replaced, stripped or normalised,
    # and a small byte budget, make the cleaned forms collide often.
    outputs = {}
    for text in texts:
        try:
            outputs[text] = safe_component(text, max_bytes=max_bytes)
        except UnsafePathError:
            continue
    assert len(set(outputs.values())) == len(outputs)


@pytest.mark.parametrize(
    "text",
    [
        "../../etc/passwd",
        "/etc/passwd",
        "..\\..\\windows\\system32",
        "C:\\x",
        "name\x00.png",
        "x" * 1000,
        "é" * 1000,
        "CON",
        "con.txt",
        "Com1",
        "LPT9.tar.gz",
        'a<b>c:d"e|f?g*h',
        "\u202egnp.exe",
        "line\nbreak\r",
        " .hidden. ",
    ],
)
def test_hostile_names_become_single_safe_components(text: str) -> None:
    out = safe_component(text)
    assert "/" not in out
    assert "\\" not in out
    assert "\x00" not in out
    assert "\u202e" not in out
    assert len(out.encode("utf-8")) <= 120
    assert out.split(".")[0].rstrip().upper() not in {"CON", "COM1", "LPT9", "NUL"}
    assert out != text  # every one of these had to change, so it carries a hash
    assert out[-13] == "~"


@pytest.mark.parametrize(
    "text", ["", " ", "   \t\n", ".", "..", "...", " . . ", "\x00\x01", "\u2028"]
)
def test_unusable_names_are_rejected(text: str) -> None:
    with pytest.raises(UnsafePathError) as info:
        safe_component(text, item="CAMa1")
    assert info.value.item == "CAMa1"


def test_safe_names_pass_unchanged() -> None:
    for text in ["0ccfc9c8-5249-4915-889f-6b240480cd7b", "CAMaJGNiYmNk$_-", "été", "a.b c"]:
        assert safe_component(text) == text


def test_unicode_is_nfc_normalised_but_forms_stay_distinct() -> None:
    nfc, nfd = "caf\u00e9", "cafe\u0301"
    assert safe_component(nfc) == nfc
    assert safe_component(nfd).startswith(nfc + "~")
    assert safe_component(nfd) != safe_component(nfc)


def test_truncation_never_splits_a_character() -> None:
    for max_bytes in range(16, 40):
        out = safe_component("€" * 200, max_bytes=max_bytes)
        assert len(out.encode("utf-8")) <= max_bytes
        assert set(out[:-13]) == {"€"}


def test_text_that_looks_hashed_is_hashed_again() -> None:
    altered = safe_component("a/b")
    assert safe_component(altered) != altered


def test_max_bytes_bounds() -> None:
    with pytest.raises(ConfigError):
        safe_component("x", max_bytes=8)
    with pytest.raises(ConfigError):
        safe_component("x", max_bytes=256)


# --- templates -------------------------------------------------------------------------------


def render(template: str = DEFAULT_TEMPLATE, **overrides: Any) -> PurePosixPath:
    values: dict[str, Any] = {
        "create_time": WHEN,
        "media_key": "0ccfc9c8-5249-4915-889f-6b240480cd7b",
        "name": "CAMaJGNiYmNk",
        "media_type": "IMAGE",
        "ext": "png",
    }
    values.update(overrides)
    return render_destination(template, **values)


def test_default_template() -> None:
    assert render() == PurePosixPath("2025-10-29/0ccfc9c8-5249-4915-889f-6b240480cd7b.png")


def test_all_fields() -> None:
    template = "{media_type}/{year}/{month}/{day}/{name}_{media_key}.{ext}"
    validate_template(template)
    assert render(template, media_key="k1") == PurePosixPath("image/2025/10/29/CAMaJGNiYmNk_k1.png")


def test_date_is_the_utc_date() -> None:
    late_evening_in_new_york = datetime(2025, 10, 29, 22, 30, tzinfo=timezone(timedelta(hours=-5)))
    assert render(create_time=late_evening_in_new_york).parts[0] == "2025-10-30"


def test_naive_time_is_refused() -> None:
    with pytest.raises(ConfigError, match="timezone-aware"):
        render(create_time=datetime(2025, 1, 1))


@pytest.mark.parametrize(
    "values",
    [
        {"media_key": "../../etc/passwd"},
        {"media_key": "/abs"},
        {"name": "../..", "media_key": "k"},
        {"media_key": "a" * 1000},
        {"media_type": "../video"},
    ],
)
def test_hostile_values_stay_in_their_component(values: dict[str, str]) -> None:
    template = "{media_type}/{date}/{name}-{media_key}.{ext}"
    path = render(template, **values)
    assert len(path.parts) == 3
    assert ".." not in path.parts
    assert not path.is_absolute()
    assert all(len(part.encode()) <= 200 for part in path.parts)


def test_unusable_values_name_the_item() -> None:
    for values in [{"media_key": " . "}, {"name": ".."}, {"media_key": "\x00"}]:
        with pytest.raises(UnsafePathError) as info:
            render("{name}/{media_key}.{ext}", **values)
        assert info.value.item == values.get("name", "CAMaJGNiYmNk")
    for ext in ["", "p/ng", "..", "x" * 17, "png\x00"]:
        with pytest.raises(UnsafePathError):
            render(ext=ext)


@pytest.mark.parametrize(
    ("template", "why"),
    [
        ("/abs/{media_key}.{ext}", "relative"),
        ("C:/x/{media_key}.{ext}", "relative"),
        ("{date}/../{media_key}.{ext}", r"'\.\.'"),
        ("./{media_key}.{ext}", r"'\.'"),
        ("{unknown}/{media_key}.{ext}", "unknown field"),
        ("{date.year}/{media_key}.{ext}", "unknown field"),
        ("{}/{media_key}.{ext}", "unknown field"),
        ("{date}/{media_key}", r"end with \.\{ext\}"),
        ("{date}/{media_key}{ext}", r"end with \.\{ext\}"),
        ("{date}/{media_key}.{ext}.bak", r"end with \.\{ext\}"),
        ("{ext}/{media_key}.png", r"end with \.\{ext\}"),
        ("{date}.{ext}", "media_key"),
        ("{date}//{media_key}.{ext}", "empty folder"),
        ("{date}/{media_key!r}.{ext}", "no format"),
        ("{date:%Y}/{media_key}.{ext}", "no format"),
        ("{date/{media_key}.{ext}", "bad file name template"),
        ("a\\b/{media_key}.{ext}", "use /"),
        ("what?/{media_key}.{ext}", "contains one of"),
        ("CON/{media_key}.{ext}", "unusable name"),
        ("dir./{media_key}.{ext}", "unusable name"),
        ("x" * 300 + "/{media_key}.{ext}", "exceed"),
    ],
)
def test_bad_templates(template: str, why: str) -> None:
    with pytest.raises(ConfigError, match=why):
        validate_template(template)
    with pytest.raises(ConfigError):
        render(template)


# --- resolve_inside ---------------------------------------------------------------------------


def test_resolve_inside_joins(tmp_path: Path) -> None:
    got = resolve_inside(tmp_path, PurePosixPath("2025-10-29/k.png"))
    assert got == tmp_path.resolve() / "2025-10-29" / "k.png"
    assert resolve_inside(str(tmp_path), "a/./b.png") == tmp_path.resolve() / "a" / "b.png"


@pytest.mark.parametrize(
    "relative", ["/etc/passwd", "../x.png", "a/../../x.png", "a/b\x00.png", "a\\..\\x", "", "."]
)
def test_resolve_inside_refuses(tmp_path: Path, relative: str) -> None:
    with pytest.raises(UnsafePathError) as info:
        resolve_inside(tmp_path, relative, item="CAMa1")
    assert info.value.item == "CAMa1"


def test_symlinked_folder_leading_outside_is_refused(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "2025-10-29").symlink_to(outside, target_is_directory=True)
    with pytest.raises(UnsafePathError, match="symlink"):
        resolve_inside(root, "2025-10-29/k.png")
    (root / "deep").mkdir()
    (root / "deep" / "up").symlink_to("../..", target_is_directory=True)
    with pytest.raises(UnsafePathError):
        resolve_inside(root, "deep/up/k.png")


def test_outside_folder_is_refused_even_when_its_file_links_back_inside(tmp_path: Path) -> None:
    # The part file would be written in the folder, which is outside.
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "inside.png").write_bytes(b"x")
    (outside / "k.png").symlink_to(root / "inside.png")
    (root / "d").symlink_to(outside, target_is_directory=True)
    with pytest.raises(UnsafePathError, match="symlink"):
        resolve_inside(root, "d/k.png")


def test_symlinked_file_leading_outside_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "k.png").symlink_to(tmp_path / "victim")
    with pytest.raises(UnsafePathError):
        resolve_inside(root, "k.png")


def test_symlinks_inside_the_root_are_fine(tmp_path: Path) -> None:
    real = tmp_path / "real"
    (real / "store").mkdir(parents=True)
    (real / "alias").symlink_to(real / "store", target_is_directory=True)
    link_root = tmp_path / "link-root"
    link_root.symlink_to(real, target_is_directory=True)
    assert resolve_inside(link_root, "alias/k.png") == real.resolve() / "store" / "k.png"


# --- AtomicFile -------------------------------------------------------------------------------


def names(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()} if folder.exists() else set()


def test_commit_places_the_file_with_its_hash(tmp_path: Path) -> None:
    final = tmp_path / "2025-10-29" / "k.png"
    data = PNG_HEAD + os.urandom(5000)
    with AtomicFile(final, item="CAMa1") as out:
        for i in range(0, len(data), 777):
            out.write(data[i : i + 777])
        assert out.temp_path.parent == final.parent
        assert out.temp_path.name.startswith(".k.png.")
        assert out.temp_path.name.endswith(".part")
        assert names(final.parent) == {out.temp_path.name}  # nothing at the final path yet
        assert out.size == len(data)
        assert out.head == data[:SNIFF_BYTES]
        assert sniff(out.head) is MediaKind.PNG
        assert out.commit() == final
    assert final.read_bytes() == data
    assert out.sha256 == hashlib.sha256(data).hexdigest()
    assert names(final.parent) == {"k.png"}


def test_an_exception_leaves_nothing(tmp_path: Path) -> None:
    final = tmp_path / "d" / "k.png"

    def interrupted_download() -> AtomicFile:
        with AtomicFile(final) as out:
            out.write(b"partial")
            raise RuntimeError("connection reset")

    with pytest.raises(RuntimeError):
        interrupted_download()
    assert names(final.parent) == set()


def test_leaving_without_commit_or_aborting_leaves_nothing(tmp_path: Path) -> None:
    with AtomicFile(tmp_path / "a.bin") as out:
        out.write(b"x")
    other = AtomicFile(tmp_path / "b.bin")
    other.write(b"y")
    other.abort()
    other.abort()  # idempotent
    assert names(tmp_path) == set()
    with pytest.raises(ValueError):
        other.write(b"z")


def test_commit_under_the_sniffed_name(tmp_path: Path) -> None:
    with AtomicFile(tmp_path / "k.download") as out:
        out.write(PNG_HEAD)
        kind = sniff(out.head)
        assert kind is not None
        out.commit(tmp_path / f"k.{kind.extension}")
    assert names(tmp_path) == {"k.png"}
    assert out.final_path == tmp_path / "k.png"


def test_commit_elsewhere_is_refused(tmp_path: Path) -> None:
    with AtomicFile(tmp_path / "a" / "k.bin") as out:
        out.write(b"x")
        with pytest.raises(ConfigError):
            out.commit(tmp_path / "b" / "k.bin")
    assert names(tmp_path / "a") == set()


def test_commit_replaces_an_existing_file(tmp_path: Path) -> None:
    final = tmp_path / "k.bin"
    final.write_bytes(b"old and damaged")
    with AtomicFile(final) as out:
        out.write(b"new")
        assert final.read_bytes() == b"old and damaged"
        out.commit()
    assert final.read_bytes() == b"new"


def test_commit_with_may_replace_asks_only_when_a_file_is_there(tmp_path: Path) -> None:
    asked: list[Path] = []
    with AtomicFile(tmp_path / "k.bin") as out:
        out.write(b"new")
        out.commit(may_replace=lambda path: asked.append(path) or False)
    assert (tmp_path / "k.bin").read_bytes() == b"new" and asked == []
    assert names(tmp_path) == {"k.bin"}


def test_commit_never_replaces_a_file_may_replace_refuses(tmp_path: Path) -> None:
    final = tmp_path / "k.bin"
    final.write_bytes(b"someone else's")
    asked: list[Path] = []
    with AtomicFile(final, item="CAMa1") as out:
        out.write(b"new")
        with pytest.raises(StorageError, match="not this item's file") as caught:
            out.commit(may_replace=lambda path: asked.append(path) or False)
    assert caught.value.item == "CAMa1" and caught.value.path == str(final)
    assert asked == [final] and final.read_bytes() == b"someone else's"
    assert names(tmp_path) == {"k.bin"}  # no part file left


def test_commit_replaces_a_file_may_replace_allows(tmp_path: Path) -> None:
    final = tmp_path / "k.bin"
    final.write_bytes(b"damaged")
    with AtomicFile(final) as out:
        out.write(b"new")
        out.commit(may_replace=lambda path: path == final)
    assert final.read_bytes() == b"new" and names(tmp_path) == {"k.bin"}


def test_commit_without_hard_links_still_asks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_links(*args: Any, **kwargs: Any) -> None:
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    (tmp_path / "taken.bin").write_bytes(b"theirs")
    with AtomicFile(tmp_path / "taken.bin") as out:
        out.write(b"mine")
        with pytest.raises(StorageError):
            out.commit(may_replace=lambda path: False)
    with AtomicFile(tmp_path / "free.bin") as out:
        out.write(b"mine")
        out.commit(may_replace=lambda path: False)
    assert (tmp_path / "taken.bin").read_bytes() == b"theirs"
    assert (tmp_path / "free.bin").read_bytes() == b"mine"
    assert names(tmp_path) == {"taken.bin", "free.bin"}


def test_unique_stem_appends_the_name_digest_to_the_file_name() -> None:
    assert unique_stem("2025-10-29/key", "CAMa1") == f"2025-10-29/key~{digest('CAMa1')}"
    assert unique_stem("key", "CAMa1") == f"key~{digest('CAMa1')}"
    assert unique_stem("d/key", "CAMa1") != unique_stem("d/key", "CAMa2")
    long = unique_stem("d/" + "é" * 150, "CAMa1")
    assert long.startswith("d/é") and len((long.split("/")[-1] + ".webm").encode()) <= 200


def test_fold_path_compares_as_a_case_insensitive_disk_does() -> None:
    assert fold_path("D/Key.PNG") == fold_path("d/key.png")
    assert fold_path(unicodedata.normalize("NFD", "é")) == fold_path("É")
    assert fold_path("d/key") != fold_path("d/key2")


def test_empty_file(tmp_path: Path) -> None:
    with AtomicFile(tmp_path / "e.bin") as out:
        assert (out.size, out.head) == (0, b"")
        assert out.sha256 == hashlib.sha256().hexdigest()
        out.commit()
    assert (tmp_path / "e.bin").read_bytes() == b""


def test_verify_checks_the_part_file(tmp_path: Path) -> None:
    with AtomicFile(tmp_path / "k.png", item="CAMa1") as out:
        out.write(PNG_HEAD + b"\x00\x00\x00\x0dIHDR" + b"\x00" * 17)
        with pytest.raises(IntegrityError) as info:
            out.verify(MediaKind.PNG)
        assert info.value.item == "CAMa1"


def _fd_of(path: Path) -> int:
    for entry in os.scandir("/proc/self/fd"):
        try:
            if os.readlink(entry.path) == str(path):
                return int(entry.name)
        except OSError:
            continue
    raise AssertionError(f"{path} is not open")


@pytest.mark.skipif(
    not (os.path.exists("/dev/full") and os.path.isdir("/proc/self/fd")), reason="needs Linux"
)
def test_disk_full_is_a_storage_error_and_leaves_nothing(tmp_path: Path) -> None:
    # /dev/full answers every write with a real ENOSPC: swap it in under the part file.
    final = tmp_path / "d" / "k.mp4"
    out = AtomicFile(final, item="CAUS1")
    full = os.open("/dev/full", os.O_WRONLY)
    os.dup2(full, _fd_of(out.temp_path))
    os.close(full)
    with pytest.raises(StorageError) as info:
        out.write(b"v" * 10_000)
    error = info.value
    assert "disk full" in str(error)
    assert "free space and run again" in str(error)
    assert error.item == "CAUS1"
    assert error.path == str(final)
    assert str(final) in str(error)
    assert names(final.parent) == set()
    assert out.closed


def test_read_only_file_system_is_a_storage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: Any, **kwargs: Any) -> int:
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(os, "open", refuse)
    with pytest.raises(StorageError, match="read-only") as info:
        AtomicFile(tmp_path / "k.png", item="CAMa1")
    monkeypatch.undo()
    assert info.value.item == "CAMa1"
    assert names(tmp_path) == set()


def test_failed_rename_is_a_storage_error_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise OSError(errno.EACCES, "Permission denied")

    out = AtomicFile(tmp_path / "k.png", item="CAMa1")
    out.write(b"data")
    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(StorageError, match="not writable"):
        out.commit()
    monkeypatch.undo()
    assert names(tmp_path) == set()


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_read_only_directory_is_a_storage_error(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(StorageError, match="not writable") as info:
            AtomicFile(folder / "k.png", item="CAMa1")
        assert info.value.item == "CAMa1"
        with pytest.raises(StorageError, match="not writable"):
            AtomicFile(folder / "sub" / "k.png")
    finally:
        folder.chmod(0o755)
    assert names(folder) == set()


def test_truncate_to_recomputes_the_hash(tmp_path: Path) -> None:
    data = os.urandom(3000)
    with AtomicFile(tmp_path / "k.bin") as out:
        out.write(data)
        out.truncate_to(1234)
        assert out.size == 1234
        assert out.sha256 == hashlib.sha256(data[:1234]).hexdigest()
        out.write(b"tail")
        out.truncate_to(0)
        assert (out.size, out.head) == (0, b"")
        out.write(data)
        with pytest.raises(ConfigError):
            out.truncate_to(len(data) + 1)
        out.commit()
    assert (tmp_path / "k.bin").read_bytes() == data


def test_resume_continues_a_kept_part(tmp_path: Path) -> None:
    final = tmp_path / "d" / "k.mp4"
    data = os.urandom(2_500_000)  # more than one hashing chunk
    first = AtomicFile(final)
    first.write(data[:1_200_000])
    kept = first.keep_part()
    assert kept.exists()
    assert not final.exists()
    assert AtomicFile.find_parts(final) == [kept]

    with AtomicFile(final, resume=True) as again:
        assert again.size == 1_200_000  # where the Range request starts
        assert again.head == data[:SNIFF_BYTES]
        assert again.temp_path != kept
        assert not kept.exists()
        again.write(data[1_200_000:])
        assert again.sha256 == hashlib.sha256(data).hexdigest()
        again.commit()
    assert final.read_bytes() == data
    assert names(final.parent) == {"k.mp4"}


def test_resume_without_a_part_starts_fresh(tmp_path: Path) -> None:
    with AtomicFile(tmp_path / "k.bin", resume=True) as out:
        assert out.size == 0
        out.write(b"abc")
        out.commit()
    assert (tmp_path / "k.bin").read_bytes() == b"abc"


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_resume_takes_the_largest_part_of_a_finished_writer_only(tmp_path: Path) -> None:
    final = tmp_path / "k.bin"
    live = tmp_path / f".k.bin.{os.getppid()}.0000000a.part"  # our parent is alive
    small = tmp_path / f".k.bin.{_dead_pid()}.0000000b.part"
    large = tmp_path / f".k.bin.{_dead_pid()}.0000000c.part"
    other = tmp_path / f".j.bin.{_dead_pid()}.0000000d.part"  # another item's part
    live.write_bytes(b"L" * 500)
    small.write_bytes(b"S" * 10)
    large.write_bytes(b"B" * 100)
    other.write_bytes(b"O" * 1000)
    with AtomicFile(final, resume=True) as out:
        assert out.size == 100
        assert out.head == b"B" * SNIFF_BYTES
    assert live.exists()
    assert small.exists()
    assert other.exists()
    assert not large.exists()


def test_very_long_final_names_get_a_short_part_name(tmp_path: Path) -> None:
    final = tmp_path / ("é" * 120 + ".png")  # 245 bytes: the decorated part name would not fit
    with AtomicFile(final) as out:
        assert len(out.temp_path.name.encode()) <= 255
        out.write(b"x")
        out.keep_part()
    assert AtomicFile.find_parts(final) == [out.temp_path]
    with AtomicFile(final, resume=True) as again:
        assert again.size == 1
        again.commit()
    assert final.read_bytes() == b"x"


# --- clean_stale_parts ------------------------------------------------------------------------


def test_clean_stale_parts_removes_only_our_finished_parts(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "2025-10-29").mkdir(parents=True)
    outside.mkdir()
    dead = _dead_pid()
    ours = [
        root / f".k.png.{dead}.0123abcd.part",
        root / "2025-10-29" / f".a b.mp4.{dead}.deadbeef.part",
    ]
    keep = [
        root / f".k.png.{os.getpid()}.0123abcd.part",  # this process may still be writing
        root / f".k.png.{os.getppid()}.0123abcd.part",  # so may a live process
        root / "k.png.part",
        root / ".k.part",
        root / f".k.{dead}.part",
        root / f".k.png.{dead}.XYZ12345.part",
        root / f"k.png.{dead}.0123abcd.part",
        root / "2025-10-29" / "k.png",
    ]
    for path in ours + keep:
        path.write_bytes(b"x")
    escapee = outside / f".k.png.{dead}.0123abcd.part"
    escapee.write_bytes(b"outside")
    (root / "link").symlink_to(outside, target_is_directory=True)
    (root / f".l.png.{dead}.0123abcd.part").symlink_to(escapee)

    assert clean_stale_parts(root) == 2
    assert not any(p.exists() for p in ours)
    assert all(p.exists() for p in keep)
    assert escapee.read_bytes() == b"outside"
    assert (root / f".l.png.{dead}.0123abcd.part").is_symlink()
    assert clean_stale_parts(root) == 0


def test_clean_stale_parts_respects_age(tmp_path: Path) -> None:
    part = tmp_path / f".k.png.{_dead_pid()}.0123abcd.part"
    part.write_bytes(b"x")
    an_hour_ago = part.stat().st_mtime - 3600
    os.utime(part, (an_hour_ago, an_hour_ago))
    assert clean_stale_parts(tmp_path, older_than=7200) == 0
    assert part.exists()
    assert clean_stale_parts(tmp_path, older_than=1800) == 1
    assert not part.exists()


def test_clean_stale_parts_of_a_missing_root(tmp_path: Path) -> None:
    assert clean_stale_parts(tmp_path / "nope") == 0


def test_clean_removes_a_kept_part_once_its_writer_is_gone(tmp_path: Path) -> None:
    script = (
        "import sys; from veo3dl._atomic import AtomicFile; "
        "out = AtomicFile(sys.argv[1]); out.write(b'half'); print(out.keep_part())"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "k.png")],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    )
    assert Path(done.stdout.strip()).exists()
    assert clean_stale_parts(tmp_path) == 1
    assert names(tmp_path) == set()


# --- file_matches -----------------------------------------------------------------------------


def test_file_matches(tmp_path: Path) -> None:
    data = os.urandom(3_000_000)
    path = tmp_path / "k.mp4"
    path.write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    assert file_matches(path, len(data))
    assert file_matches(str(path), len(data), digest)
    assert file_matches(path, len(data), digest.upper())
    assert not file_matches(path, len(data) - 1)
    assert not file_matches(path, len(data), hashlib.sha256(b"other").hexdigest())
    assert not file_matches(tmp_path / "missing.mp4", 0)
    assert not file_matches(tmp_path / "missing" / "deeper.mp4", 0)
    assert not file_matches(tmp_path, 0)
    link = tmp_path / "link.mp4"
    link.symlink_to(path)
    assert not file_matches(link, len(data))
    assert not file_matches(path / "under-a-file", 0)


def test_file_matches_counts_an_unreadable_file_as_a_storage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "k.png"
    path.write_bytes(b"x")

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr("builtins.open", refuse)
    with pytest.raises(StorageError):
        file_matches(path, 1, "0" * 64)


def test_sha256_and_size_follow_every_write(tmp_path: Path) -> None:
    digest = hashlib.sha256()
    with AtomicFile(tmp_path / "k.bin") as out:
        chunks: list[bytes | bytearray | memoryview] = [
            b"",
            b"a",
            bytearray(b"bc"),
            memoryview(b"def"),
            b"\x00" * 100,
        ]
        for chunk in chunks:
            assert out.write(chunk) == len(chunk)
            digest.update(chunk)
            assert out.sha256 == digest.hexdigest()
        assert out.size == 106
        out.commit()
