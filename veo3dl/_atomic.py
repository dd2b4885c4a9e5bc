"""Writing a file so that it appears at its final path whole or not at all.

:class:`AtomicFile` writes into a hidden part file beside the destination,
hashing as it goes, and renames it into place only on
:meth:`AtomicFile.commit` (after fsyncing the file, then its folder), so a
reader never sees a file at the final path that is not whole.  Part files
a killed writer left behind are removed by :func:`clean_stale_parts`.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import secrets
import stat
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from veo3dl._file_checks import file_matches, sha256_file, storage_error
from veo3dl._paths import StrPath, digest, truncate_utf8
from veo3dl._sniff import SNIFF_BYTES, MediaKind, verify_complete
from veo3dl.exceptions import ConfigError, StorageError

__all__ = ["AtomicFile", "clean_stale_parts", "file_matches", "sha256_file"]

_CHUNK = 1 << 20
_PART = re.compile(r"\.(?P<stem>.+)\.(?P<pid>[0-9]+)\.[0-9a-f]{8}\.part", re.DOTALL)
_PART_STEM_MAX = 200
# link() cannot be used on this file system: fall back to checking, then renaming.
_NO_LINK = frozenset(
    code
    for code in (
        errno.EPERM,
        errno.EACCES,
        errno.EXDEV,
        errno.EMLINK,
        errno.ENOSYS,
        getattr(errno, "ENOTSUP", None),
        getattr(errno, "EOPNOTSUPP", None),
    )
    if code is not None
)


def _part_stem(final_name: str) -> str:
    if len(final_name.encode("utf-8")) <= _PART_STEM_MAX:
        return final_name
    return truncate_utf8(final_name, _PART_STEM_MAX - 13) + "~" + digest(final_name)


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
            raise storage_error(
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
            raise storage_error(exc, doing="creating", path=self._dir, item=self.item) from exc
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
        return storage_error(exc, doing=doing, path=self.final_path, item=self.item)

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

    def commit(
        self,
        final_path: StrPath | None = None,
        *,
        may_replace: Callable[[Path], bool] | None = None,
    ) -> Path:
        """Move the file into place, durably; return the final path.

        ``final_path`` may rename the file (e.g. once sniffing gave the
        extension) but must be in the same folder.  A file already at the
        final path is replaced, unless *may_replace* is given: then it is
        asked about the existing path, and when it says no the part file is
        removed and :class:`StorageError` raised, the existing file untouched.
        (Where the file system has hard links, the "no file there" case is
        atomic: a file appearing meanwhile is never replaced unasked.)
        """
        fd = self._open_fd()
        target = self.final_path if final_path is None else Path(os.path.abspath(final_path))
        if target.parent != self._dir:
            raise ConfigError(f"commit to {target} must stay in {self._dir}", item=self.item)
        try:
            os.fsync(fd)
            self._fd = None
            os.close(fd)
            if may_replace is None:
                os.replace(self.temp_path, target)
            elif not self._place(target, may_replace):
                raise StorageError(
                    f"{target} already exists and is not this item's file; it was left alone",
                    path=str(target),
                    item=self.item,
                    hint="another item or program put it there: move it away and run again",
                )
        except StorageError:
            self.final_path = target
            self.abort()
            raise
        except OSError as exc:
            self.final_path = target
            raise self._fail(exc, "saving") from exc
        self.final_path = target
        self._done = True
        for folder in self._synced_dirs:
            _fsync_dir(folder, item=self.item)
        return target

    def _place(self, target: Path, may_replace: Callable[[Path], bool]) -> bool:
        """Put the part file at *target* without replacing a file *may_replace* refuses."""
        try:
            os.link(self.temp_path, target)  # fails if anything is there: no race
        except FileExistsError:
            pass
        except OSError as exc:
            if exc.errno not in _NO_LINK:
                raise
            if not os.path.lexists(target):
                os.replace(self.temp_path, target)
                return True
        else:
            with contextlib.suppress(OSError):  # a leftover part is cleaned later
                os.unlink(self.temp_path)
            return True
        if not may_replace(target):
            return False
        os.replace(self.temp_path, target)
        return True

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
            raise storage_error(exc, doing="syncing", path=folder, item=item) from exc


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
                raise storage_error(exc, doing="removing", path=Path(path), item=None) from exc
            removed += 1
    return removed
