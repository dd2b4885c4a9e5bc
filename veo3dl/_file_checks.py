"""Checks of files already on disk: their hash, their size, whether they are whole media.

The parent uses these before it skips or adopts a file without a request;
the worker uses them before it lets a download replace a file.  Every OS
error becomes a :class:`StorageError` naming the path.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from pathlib import Path

from veo3dl._paths import StrPath
from veo3dl._sniff import SNIFF_BYTES, MediaKind, describe_unwanted, sniff, verify_complete
from veo3dl.exceptions import IntegrityError, StorageError

__all__ = ["check_media_type", "file_matches", "sha256_file", "storage_error", "whole_media"]

_CHUNK = 1 << 20


def storage_error(exc: OSError, *, doing: str, path: Path, item: str | None) -> StorageError:
    """A :class:`StorageError` for *exc*, met while *doing* something to *path*."""
    code = exc.errno
    if code in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        message, hint = f"disk full while {doing} {path}", "free space and run again"
    elif code == errno.EROFS:
        message = f"destination is read-only: {doing} {path} failed"
        hint = "choose a writable storage directory"
    elif code in (errno.EACCES, errno.EPERM) and doing == "reading":
        message = f"permission denied: {doing} {path} failed"
        hint = "check the file's and its folders' permissions"
    elif code in (errno.EACCES, errno.EPERM):
        message = f"destination is not writable: {doing} {path} failed"
        hint = "check the storage directory's permissions"
    else:
        message, hint = f"{doing} {path} failed: {exc.strerror or exc}", None
    return StorageError(message, path=str(path), item=item, hint=hint)


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
        raise storage_error(exc, doing="reading", path=Path(path), item=None) from exc
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
        raise storage_error(exc, doing="reading", path=Path(path), item=None) from exc
    return digest.hexdigest()


def check_media_type(kind: MediaKind, media_type: str | None, *, item: str | None) -> None:
    """Raise :class:`IntegrityError` when *kind* is a video and the item an image, or back.

    *media_type* is Flow's ``IMAGE`` or ``VIDEO`` (any other value, or none,
    is not checked).
    """
    wanted = (media_type or "").upper()
    if wanted not in ("IMAGE", "VIDEO") or kind.is_video == (wanted == "VIDEO"):
        return
    raise IntegrityError(
        f"the item is {'a video' if wanted == 'VIDEO' else 'an image'}, "
        f"but the bytes are {kind.mime_type}",
        item=item,
        hint="the server sent another item's file; nothing was kept",
    )


def whole_media(path: Path, media_type: str | None, *, item: str | None) -> MediaKind:
    """The kind of the whole media file at *path*, of the item's media type.

    Raises :class:`IntegrityError` when the bytes are not media, are cut
    short or damaged, or are a video where an image belongs (or back), and
    :class:`StorageError` when the file cannot be read.
    """
    try:
        with path.open("rb") as handle:
            head = handle.read(SNIFF_BYTES)
            size = os.fstat(handle.fileno()).st_size
    except OSError as exc:
        raise storage_error(exc, doing="reading", path=path, item=item) from exc
    kind = sniff(head)
    if kind is None:
        raise IntegrityError(f"{path} holds {describe_unwanted(head)}, not media", item=item)
    verify_complete(path, kind, size, item=item)
    check_media_type(kind, media_type, item=item)
    return kind
