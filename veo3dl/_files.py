"""Where a media item goes on disk, and writing it there without ever leaving half a file.

Everything that becomes a path here (item names, media keys, extensions)
arrives from the network, so it passes through :func:`safe_component` and
:func:`resolve_inside` before it touches the disk.  :class:`AtomicFile` writes
into a hidden part file beside the destination and renames it into place only
on :meth:`AtomicFile.commit`, so a reader never sees a file at the final path
that is not whole.

Format sniffing and completeness checks live in :mod:`veo3dl._sniff` and are
re-exported here.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import secrets
import stat
import string
import time
import unicodedata
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from types import TracebackType

from veo3dl._sniff import SNIFF_BYTES, MediaKind, describe_unwanted, sniff, verify_complete
from veo3dl.exceptions import ConfigError, StorageError, UnsafePathError

__all__ = [
    "DEFAULT_TEMPLATE",
    "SNIFF_BYTES",
    "AtomicFile",
    "MediaKind",
    "clean_stale_parts",
    "describe_unwanted",
    "file_matches",
    "render_destination",
    "resolve_inside",
    "safe_component",
    "sha256_file",
    "sniff",
    "validate_template",
    "verify_complete",
]

DEFAULT_TEMPLATE = "{date}/{media_key}.{ext}"
"""Where an item goes under the storage root unless configured otherwise."""

StrPath = str | os.PathLike[str]

_CHUNK = 1 << 20
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
_PART = re.compile(r"\.(?P<stem>.+)\.(?P<pid>[0-9]+)\.[0-9a-f]{8}\.part", re.DOTALL)
_PART_STEM_MAX = 200
_ENDS = re.compile(r"\A[\s.]+|[\s.]+\Z")


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:_HASH_HEX]


def _truncate_utf8(text: str, max_bytes: int) -> str:
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
    suffix = "~" + _digest(text)
    return _truncate_utf8(cleaned, max_bytes - len(suffix)) + suffix


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


def _storage_error(exc: OSError, *, doing: str, path: Path, item: str | None) -> StorageError:
    code = exc.errno
    if code in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        message, hint = f"disk full while {doing} {path}", "free space and run again"
    elif code == errno.EROFS:
        message = f"destination is read-only: {doing} {path} failed"
        hint = "choose a writable storage directory"
    elif code in (errno.EACCES, errno.EPERM):
        message = f"destination is not writable: {doing} {path} failed"
        hint = "check the storage directory's permissions"
    else:
        message, hint = f"{doing} {path} failed: {exc.strerror or exc}", None
    return StorageError(message, path=str(path), item=item, hint=hint)


def _part_stem(final_name: str) -> str:
    if len(final_name.encode("utf-8")) <= _PART_STEM_MAX:
        return final_name
    return _truncate_utf8(final_name, _PART_STEM_MAX - 13) + "~" + _digest(final_name)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists but belongs to someone else (EPERM), or we cannot tell
    # A killed writer whose parent died too lingers as a zombie until init
    # reaps it: it is dead, and its part file is stale.
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            state = fh.read().rsplit(b")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state not in (b"Z", b"X")


def _hash_fd(fd: int, length: int) -> tuple[hashlib._Hash, bytes]:
    digest = hashlib.sha256()
    head = b""
    os.lseek(fd, 0, os.SEEK_SET)
    remaining = length
    while remaining > 0:
        chunk = os.read(fd, min(_CHUNK, remaining))
        if not chunk:
            break
        digest.update(chunk)
        if len(head) < SNIFF_BYTES:
            head += chunk[: SNIFF_BYTES - len(head)]
        remaining -= len(chunk)
    return digest, head


class AtomicFile:
    """Write a file so that it appears at its final path whole or not at all.

    Bytes go to a hidden part file ``.{final name}.{pid}.{random}.part`` in
    the destination's folder (created as needed).  :meth:`commit` fsyncs it,
    renames it over the final path (replacing any file there) and fsyncs the
    folder; :meth:`abort`, an exception inside ``with``, or leaving ``with``
    without committing removes it.  :attr:`size`, :attr:`sha256` and
    :attr:`head` (the first :data:`SNIFF_BYTES` bytes) follow the writes.
    Writes go straight to the OS, unbuffered (an error surfaces at the write
    that caused it), so write in chunks of many kilobytes, not byte by byte.

    Resuming: ``AtomicFile(path, resume=True)`` adopts the largest part file
    an earlier writer of the same ``path`` left behind (see :meth:`keep_part`)
    if its process has ended, renaming it to a name of its own so two
    writers cannot adopt the same one.  The existing bytes are read once to
    recompute the hash, and :attr:`size` says where to resume (the ``Range``
    start); :meth:`truncate_to` cuts back if the server answers from
    elsewhere.  Only one writer per item at a time is supported.

    Every OS error becomes a :class:`StorageError` naming the item and the
    path (disk full, read-only, not writable), after the part file is removed.
    """

    def __init__(
        self, final_path: StrPath, *, item: str | None = None, resume: bool = False
    ) -> None:
        self.final_path = Path(os.path.abspath(final_path))
        self.item = item
        self._dir = self.final_path.parent
        self._fd: int | None = None
        self._done = False
        self._synced_dirs = self._make_dirs()
        stem = _part_stem(self.final_path.name)
        self.temp_path = self._dir / f".{stem}.{os.getpid()}.{secrets.token_hex(4)}.part"
        flags = os.O_RDWR | getattr(os, "O_BINARY", 0) | getattr(os, "O_NOFOLLOW", 0)
        try:
            if resume and self._adopt():
                self._fd = os.open(self.temp_path, flags)
                self._hash, self._head = _hash_fd(self._fd, os.fstat(self._fd).st_size)
                self._size = os.lseek(self._fd, 0, os.SEEK_END)
            else:
                self._fd = os.open(self.temp_path, flags | os.O_CREAT | os.O_EXCL, 0o666)
                self._hash, self._head, self._size = hashlib.sha256(), b"", 0
        except OSError as exc:
            self.abort()
            raise _storage_error(
                exc, doing="creating a part file for", path=self.final_path, item=item
            ) from exc

    def _make_dirs(self) -> list[Path]:
        """Create missing folders; return the folders whose entries commit must fsync."""
        synced = [self._dir]
        for ancestor in self._dir.parents:
            if ancestor.exists():
                break
            synced.append(ancestor)
        try:
            self._dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise _storage_error(exc, doing="creating", path=self._dir, item=self.item) from exc
        # A new folder's own entry lives in its parent: fsync that too.
        return [*synced, synced[-1].parent] if len(synced) > 1 else synced

    def _adopt(self) -> bool:
        for part in self.find_parts(self.final_path):
            match = _PART.fullmatch(part.name)
            pid = int(match["pid"]) if match else 0
            if pid != os.getpid() and _pid_alive(pid):
                continue
            try:
                os.rename(part, self.temp_path)
            except FileNotFoundError:
                continue  # another writer adopted it first
            return True
        return False

    @staticmethod
    def find_parts(final_path: StrPath) -> list[Path]:
        """Part files left for ``final_path`` by any writer, largest first."""
        final = Path(os.path.abspath(final_path))
        prefix = f".{_part_stem(final.name)}."
        found: list[tuple[int, Path]] = []
        try:
            entries = list(os.scandir(final.parent))
        except (FileNotFoundError, NotADirectoryError):
            return []
        for entry in entries:
            match = _PART.fullmatch(entry.name)
            if match and f".{match['stem']}." == prefix and entry.is_file(follow_symlinks=False):
                found.append((entry.stat(follow_symlinks=False).st_size, Path(entry.path)))
        return [path for _, path in sorted(found, key=lambda pair: -pair[0])]

    @property
    def size(self) -> int:
        """Bytes in the file so far."""
        return self._size

    @property
    def sha256(self) -> str:
        """SHA-256 hex digest of the bytes so far."""
        return self._hash.hexdigest()

    @property
    def head(self) -> bytes:
        """The first :data:`SNIFF_BYTES` bytes (fewer while the file is shorter)."""
        return self._head

    @property
    def closed(self) -> bool:
        """True after commit, abort or keep_part."""
        return self._fd is None

    def _open_fd(self) -> int:
        if self._fd is None:
            raise ValueError(f"{self.final_path}: the file was already committed or aborted")
        return self._fd

    def _fail(self, exc: OSError, doing: str) -> StorageError:
        self.abort()
        return _storage_error(exc, doing=doing, path=self.final_path, item=self.item)

    def write(self, data: bytes | bytearray | memoryview) -> int:
        """Append ``data``; return its length.  Raises :class:`StorageError` (file removed)."""
        fd = self._open_fd()
        view = memoryview(data).cast("B")
        try:
            written = 0
            while written < len(view):
                written += os.write(fd, view[written:])
        except OSError as exc:
            raise self._fail(exc, "writing") from exc
        self._hash.update(view)
        if len(self._head) < SNIFF_BYTES:
            self._head += bytes(view[: SNIFF_BYTES - len(self._head)])
        self._size += len(view)
        return len(view)

    def truncate_to(self, offset: int) -> None:
        """Cut the file back to ``offset`` bytes and recompute the hash over what is left."""
        fd = self._open_fd()
        if not 0 <= offset <= self._size:
            raise ConfigError(f"cannot truncate to {offset}: the file has {self._size} bytes")
        try:
            os.ftruncate(fd, offset)
            self._hash, self._head = _hash_fd(fd, offset)
            self._size = os.lseek(fd, 0, os.SEEK_END)
        except OSError as exc:
            raise self._fail(exc, "truncating") from exc

    def verify(self, kind: MediaKind) -> None:
        """Check the bytes so far form a whole ``kind`` file (see :func:`verify_complete`)."""
        self._open_fd()
        verify_complete(self.temp_path, kind, self._size, item=self.item)

    def commit(self, final_path: StrPath | None = None) -> Path:
        """Move the file into place, durably; return the final path.

        ``final_path`` may rename the file (e.g. once sniffing gave the
        extension) but must be in the same folder.
        """
        fd = self._open_fd()
        target = self.final_path if final_path is None else Path(os.path.abspath(final_path))
        if target.parent != self._dir:
            raise ConfigError(f"commit to {target} must stay in {self._dir}", item=self.item)
        try:
            os.fsync(fd)
            self._fd = None
            os.close(fd)
            os.replace(self.temp_path, target)
        except OSError as exc:
            self.final_path = target
            raise self._fail(exc, "saving") from exc
        self.final_path = target
        self._done = True
        for folder in self._synced_dirs:
            _fsync_dir(folder, item=self.item)
        return target

    def keep_part(self) -> Path:
        """Close without committing but keep the part file for a later ``resume=True``."""
        fd = self._open_fd()
        try:
            os.fsync(fd)  # after a power cut a resumed part must not end in garbage
        except OSError as exc:
            raise self._fail(exc, "saving the partial download of") from exc
        self._fd = None
        self._done = True
        with contextlib.suppress(OSError):  # the data is already synced
            os.close(fd)
        return self.temp_path

    def abort(self) -> None:
        """Close and remove the part file (best effort; safe to call more than once)."""
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):  # the file is being thrown away
                os.close(fd)
        if not self._done:
            self._done = True
            with contextlib.suppress(OSError):  # never created, or already gone
                os.unlink(self.temp_path)

    def __enter__(self) -> AtomicFile:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not self.closed:
            self.abort()


def _fsync_dir(folder: Path, *, item: str | None) -> None:
    if os.name == "nt":  # Windows cannot open a folder for fsync
        return
    try:
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        # Some file systems cannot fsync a folder; the data itself is synced.
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF, errno.EACCES):
            raise _storage_error(exc, doing="syncing", path=folder, item=item) from exc


def clean_stale_parts(root: Path, *, older_than: float = 0.0) -> int:
    """Remove part files :class:`AtomicFile` left under ``root``; return how many.

    Only regular files named like our part files are removed, and only when
    last modified more than ``older_than`` seconds ago and their writer
    process (this machine's pid in the name) is gone; the current process's
    own parts are kept.  Symlinked folders are not followed.
    """
    removed = 0
    cutoff = time.time() - older_than
    me = os.getpid()
    for folder, _dirs, names in os.walk(root, followlinks=False):
        for name in names:
            match = _PART.fullmatch(name)
            if not match:
                continue
            path = os.path.join(folder, name)
            try:
                info = os.lstat(path)
                pid = int(match["pid"])
                if not stat.S_ISREG(info.st_mode) or info.st_mtime > cutoff:
                    continue
                if pid == me or _pid_alive(pid):
                    continue
                os.unlink(path)
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise _storage_error(exc, doing="removing", path=Path(path), item=None) from exc
            removed += 1
    return removed


def file_matches(path: StrPath, size: int, sha256: str | None = None) -> bool:
    """True if ``path`` is a regular file (not a symlink) of ``size`` bytes and, if given, hash.

    Raises :class:`StorageError` when the file exists but cannot be read.
    """
    try:
        info = os.lstat(path)
        if not stat.S_ISREG(info.st_mode) or info.st_size != size:
            return False
        if sha256 is None:
            return True
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError as exc:
        raise _storage_error(exc, doing="reading", path=Path(path), item=None) from exc
    try:
        return sha256_file(path) == sha256.lower()
    except StorageError:
        if not os.path.lexists(path):
            return False
        raise


def sha256_file(path: StrPath) -> str:
    """The SHA-256 hex digest of a file, read in chunks.  Raises :class:`StorageError`."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            while chunk := fh.read(_CHUNK):
                digest.update(chunk)
    except OSError as exc:
        raise _storage_error(exc, doing="reading", path=Path(path), item=None) from exc
    return digest.hexdigest()
