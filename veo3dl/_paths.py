"""Where a media item goes on disk: safe names, path templates, staying inside the root.

Everything that becomes a path here (item names, media keys, extensions)
arrives from the network, so it passes through :func:`safe_component` and
:func:`resolve_inside` before it touches the disk.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import string
import unicodedata
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath

from veo3dl.exceptions import ConfigError, UnsafePathError

__all__ = [
    "DEFAULT_TEMPLATE",
    "StrPath",
    "digest",
    "fold_path",
    "render_destination",
    "resolve_inside",
    "safe_component",
    "truncate_utf8",
    "unique_stem",
    "validate_template",
]

DEFAULT_TEMPLATE = "{date}/{media_key}.{ext}"
"""Where an item goes under the storage root unless configured otherwise."""

StrPath = str | os.PathLike[str]

_HASH_HEX = 12  # 48 bits: collisions need the same cleaned prefix as well
_HASH_SUFFIX = re.compile(rf"~[0-9a-f]{{{_HASH_HEX}}}\Z")
_MIN_COMPONENT_BYTES = 16
_NAME_MAX = 255
# A rendered component leaves room for the part-file decoration
# (".{name}.{pid}.{token}.part") inside the usual 255-byte name limit.
_COMPONENT_MAX = 200
_FIELD_MAX = 120
_RESERVED_CHARS = str.maketrans(dict.fromkeys('/\\<>:"|?*', "_"))
_BIDI_CONTROLS = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)
_WINDOWS_DEVICES = frozenset(
    {"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"}
    | {f"{port}{n}" for port in ("COM", "LPT") for n in [*"0123456789", "¹", "²", "³"]}
)
_FIXED_FIELDS = {"date": 10, "year": 4, "month": 2, "day": 2, "ext": 16}
_FREE_FIELDS = frozenset({"media_key", "name", "media_type"})
_EXT = re.compile(r"[A-Za-z0-9]{1,16}")
_ENDS = re.compile(r"\A[\s.]+|[\s.]+\Z")


def digest(text: str) -> str:
    """A short stable hash of *text*, appended to names that had to be altered."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:_HASH_HEX]


def fold_path(relative: str) -> str:
    """*relative* as a case-insensitive file system compares it (NFC, case-folded)."""
    return unicodedata.normalize("NFC", relative).casefold()


def unique_stem(stem: str, name: str) -> str:
    """*stem* (a ``/``-separated path without extension) made unique to item *name*.

    ``~`` and :func:`digest` of *name* are appended to the last component,
    which is first cut so that the file name (extension included) still fits.
    """
    folder, slash, last = stem.rpartition("/")
    suffix = "~" + digest(name)
    budget = _COMPONENT_MAX - len(suffix) - 1 - _FIXED_FIELDS["ext"]
    return folder + slash + truncate_utf8(last, budget) + suffix


def truncate_utf8(text: str, max_bytes: int) -> str:
    """*text* cut to *max_bytes* of UTF-8 without splitting a character."""
    return text.encode("utf-8")[:max_bytes].decode("utf-8", "ignore")


def _is_device_name(name: str) -> bool:
    # Windows reserves "CON" also with any extension and trailing spaces.
    return name.split(".", 1)[0].rstrip(" ").upper() in _WINDOWS_DEVICES


def _strip_ends(text: str) -> str:
    return _ENDS.sub("", text)


def safe_component(text: str, *, max_bytes: int = _FIELD_MAX, item: str | None = None) -> str:
    """Turn untrusted ``text`` into one file-name component safe on Linux, macOS and Windows.

    The text is NFC-normalised; control, bidi-override and separator
    characters are removed; ``/ \\ < > : " | ? *`` become ``_``; leading and
    trailing dots and spaces are stripped; a Windows device name (``CON``,
    ``COM1``...) gets a ``_`` prefix; the result is cut to ``max_bytes`` of
    UTF-8 without splitting a character.  Whenever anything was changed, a
    ``~`` and 12 hex digits of the original's SHA-256 are appended, so two
    different inputs never share a result (text that already ends like such
    a suffix counts as changed).  Raises :class:`UnsafePathError` when nothing
    usable is left (empty, whitespace, ``.``, ``..``).
    """
    if not _MIN_COMPONENT_BYTES <= max_bytes <= _NAME_MAX:
        raise ConfigError(f"max_bytes must be {_MIN_COMPONENT_BYTES}..{_NAME_MAX}, not {max_bytes}")
    cleaned = "".join(
        ch
        for ch in unicodedata.normalize("NFC", text)
        if unicodedata.category(ch) not in ("Cc", "Cs", "Zl", "Zp") and ch not in _BIDI_CONTROLS
    )
    cleaned = _strip_ends(cleaned.translate(_RESERVED_CHARS))
    if not cleaned:
        raise UnsafePathError(
            f"{text[:40]!r} leaves no usable file name",
            item=item,
            hint="the item's name or key is empty or only dots, spaces or control characters",
        )
    if _is_device_name(cleaned):
        cleaned = "_" + cleaned
    if cleaned == text and len(text.encode("utf-8")) <= max_bytes and not _HASH_SUFFIX.search(text):
        return text
    suffix = "~" + digest(text)
    return truncate_utf8(cleaned, max_bytes - len(suffix)) + suffix


_Piece = tuple[str, str | None]  # (literal text, field name or None)


def _field_budget(component: list[_Piece]) -> int:
    """Bytes each free field of a component may take so that it fits in _COMPONENT_MAX."""
    fixed = sum(len(text.encode("utf-8")) + _FIXED_FIELDS.get(f or "", 0) for text, f in component)
    free = sum(1 for _, f in component if f in _FREE_FIELDS)
    return min(_FIELD_MAX, (_COMPONENT_MAX - fixed) // max(free, 1))


def _parse_template(template: str) -> list[list[_Piece]]:
    """Split a template into components of (literal, field) pieces, or raise ConfigError."""

    def bad(why: str) -> ConfigError:
        return ConfigError(
            f"bad file name template {template!r}: {why}",
            hint=f"use fields {sorted({*_FIXED_FIELDS, *_FREE_FIELDS})}, e.g. {DEFAULT_TEMPLATE!r}",
        )

    if template.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", template):
        raise bad("it must be a relative path")
    if "\\" in template:
        raise bad("use / to separate folders")
    components: list[list[_Piece]] = [[]]
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise bad(str(exc)) from exc
    for literal, field, spec, conversion in parsed:
        parts = literal.split("/")
        for i, part in enumerate(parts):
            if i:
                components.append([])
            if part:
                components[-1].append((part, None))
        if field is None:
            continue
        if field not in _FIXED_FIELDS and field not in _FREE_FIELDS:
            raise bad(f"unknown field {{{field}}}")
        if spec or conversion:
            raise bad(f"field {{{field}}} takes no format or conversion")
        components[-1].append(("", field))
    for component in components:
        literal = "".join(text for text, _ in component)
        if not component:
            raise bad("it has an empty folder name (// or a trailing /)")
        if literal in (".", "..") and all(field is None for _, field in component):
            raise bad("'.' and '..' are not allowed")
        if any(ch in '<>:"|?*' or not ch.isprintable() for ch in literal):
            raise bad('it contains one of <>:"|?* or a control character')
        if _field_budget(component) < _MIN_COMPONENT_BYTES:
            raise bad(f"a folder or file name would exceed {_COMPONENT_MAX} bytes")
    last = components[-1]
    if len(last) < 2 or last[-1] != ("", "ext") or not last[-2][0].endswith("."):
        raise bad("it must end with .{ext}")
    if not any(field in ("media_key", "name") for c in components for _, field in c):
        raise bad("it needs {media_key} or {name}, or items would overwrite each other")
    return components


def validate_template(template: str) -> None:
    """Check a file name template up front, raising :class:`ConfigError` if it is unusable.

    Fields: ``{date}`` (UTC ``YYYY-MM-DD``), ``{year}``, ``{month}``, ``{day}``,
    ``{media_key}``, ``{name}``, ``{media_type}`` (lowercase) and ``{ext}``
    (no dot).  ``/`` separates folders.  The template must be relative, must
    not contain ``.``/``..`` folders or characters Windows forbids, must end
    with ``.{ext}``, and must contain ``{media_key}`` or ``{name}`` so that
    each item gets its own file.
    """
    _checked_template(template)


@functools.lru_cache(maxsize=32)
def _checked_template(template: str) -> list[list[_Piece]]:
    components = _parse_template(template)
    # A trial run with harmless values catches what the template alone makes
    # unusable ("CON.{ext}", "dir./..."), as a ConfigError rather than per item.
    _render(
        components,
        create_time=datetime(2000, 1, 1, tzinfo=timezone.utc),
        values={"media_key": "k", "name": "n", "media_type": "image", "ext": "bin"},
        template=template,
        item=None,
        unusable=ConfigError,
    )
    return components


def _render(
    components: list[list[_Piece]],
    *,
    create_time: datetime,
    values: dict[str, str],
    template: str,
    item: str | None,
    unusable: type[ConfigError | UnsafePathError],
) -> PurePosixPath:
    utc = create_time.astimezone(timezone.utc)
    values = {
        **values,
        "date": f"{utc.year:04d}-{utc.month:02d}-{utc.day:02d}",
        "year": f"{utc.year:04d}",
        "month": f"{utc.month:02d}",
        "day": f"{utc.day:02d}",
    }
    rendered: list[str] = []
    for component in components:
        budget = _field_budget(component)
        text = "".join(
            piece if field is None else safe_component(values[field], max_bytes=budget, item=item)
            for piece, field in component
        )
        if text in (".", "..") or text != _strip_ends(text) or _is_device_name(text):
            raise unusable(
                f"file name template {template!r} renders the unusable name {text!r}",
                item=item,
                hint="avoid names that start or end with a dot or space, or are device names",
            )
        rendered.append(text)
    return PurePosixPath(*rendered)


def render_destination(
    template: str,
    *,
    create_time: datetime,
    media_key: str,
    name: str,
    media_type: str,
    ext: str,
) -> PurePosixPath:
    """Fill in a file name template for one item, giving a path relative to the storage root.

    ``create_time`` must be timezone-aware (its UTC date is used).  Each value
    passes through :func:`safe_component`, with a byte budget that keeps every
    rendered name within 200 bytes.  Raises :class:`ConfigError` for a bad
    template or a naive ``create_time``, and :class:`UnsafePathError` (naming
    the item) for a value that leaves no usable name or an odd extension.
    """
    if create_time.tzinfo is None or create_time.utcoffset() is None:
        raise ConfigError(f"create_time must be timezone-aware, not {create_time!r}", item=name)
    if not _EXT.fullmatch(ext):
        raise UnsafePathError(
            f"unusable file extension {ext[:20]!r}", item=name, hint="expected 1-16 letters/digits"
        )
    values = {"media_key": media_key, "name": name, "media_type": media_type.lower(), "ext": ext}
    return _render(
        _checked_template(template),
        create_time=create_time,
        values=values,
        template=template,
        item=name,
        unusable=UnsafePathError,
    )


def resolve_inside(
    root: StrPath, relative: PurePosixPath | str, *, item: str | None = None
) -> Path:
    """Join ``relative`` to ``root`` and make sure the result stays inside ``root``.

    Symlinks among the existing folders (and the file itself) are resolved,
    so a folder linking outside the root is caught.  The returned path has
    its folders resolved.  Raises :class:`UnsafePathError` for an absolute
    path, ``..``, NUL, a backslash, an empty path or an escape.  This checks
    the disk as it is now: do not let others rearrange the root meanwhile.
    """
    text = str(relative)

    def unsafe(why: str) -> UnsafePathError:
        return UnsafePathError(
            f"refusing the path {text[:200]!r} under {root}: {why}",
            item=item,
            hint="the item's path would leave the storage root",
        )

    if "\x00" in text or "\\" in text:
        raise unsafe("it contains NUL or a backslash")
    path = PurePosixPath(text)
    if path.is_absolute():
        raise unsafe("it is absolute")
    if ".." in path.parts:
        raise unsafe("it contains '..'")
    if not path.parts:
        raise unsafe("it names no file")
    try:
        base = Path(root).resolve()
        parent = base.joinpath(*path.parts[:-1]).resolve()
        target = parent / path.parts[-1]
        real = target.resolve()
    except (OSError, RuntimeError) as exc:  # RuntimeError: symlink loop on 3.10-3.12
        raise unsafe(f"it cannot be resolved ({exc})") from exc
    for candidate in (parent, real):
        if candidate != base and not candidate.is_relative_to(base):
            raise unsafe("a symlink leads outside the storage root")
    if real == base:
        raise unsafe("it is the storage root itself")
    return target
