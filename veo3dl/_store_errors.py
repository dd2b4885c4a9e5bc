"""The catalogue's SQLite failures as :class:`StorageError`, each with its real cause.

"database is locked", "unable to open database file" and "attempt to write
a readonly database" each call for something different from the user than a
file that is not a database at all; the messages name the file and say what
to do.
"""

from __future__ import annotations

import sqlite3

from veo3dl.exceptions import StorageError

__all__ = ["LOCKED_HINT", "OPEN_HINT", "classify", "header_error", "operation_error"]

LOCKED_HINT = (
    "another program (another veo3dl, or the seed app) is using it; run again when it is done"
)
OPEN_HINT = (
    "check that you may read and write the file and its folder (SQLite keeps -wal and -shm "
    "files beside it) and that the file system is writable"
)


def classify(error: sqlite3.Error) -> str:
    """What kind of SQLite failure *error* is: notadb, corrupt, locked, readonly, cantopen, other."""
    # sqlite_errorname exists from Python 3.11; the message text works on every version.
    name = getattr(error, "sqlite_errorname", "") or ""
    text = str(error).lower()
    if name.startswith("SQLITE_NOTADB") or "file is not a database" in text:
        return "notadb"
    if name.startswith("SQLITE_CORRUPT") or "malformed" in text:
        return "corrupt"
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "locked" in text or "busy" in text:
        return "locked"
    if name.startswith("SQLITE_READONLY") or "readonly" in text or "read-only" in text:
        return "readonly"
    if (
        name.startswith(("SQLITE_CANTOPEN", "SQLITE_PERM", "SQLITE_AUTH", "SQLITE_IOERR"))
        or "unable to open" in text
        or "disk i/o error" in text
    ):
        return "cantopen"
    return "other"


def header_error(error: sqlite3.DatabaseError, shown: str) -> StorageError:
    """The error for a file whose first read failed: only NOTADB means "not a database"."""
    kind = classify(error)
    if kind == "notadb":
        return StorageError(
            f"the catalogue file {shown} is not a SQLite database (corrupt, or another kind of file)",
            path=shown,
            hint="veo3dl left it untouched; move it aside or point --db elsewhere",
        )
    if kind == "corrupt":
        return StorageError(
            f"the catalogue {shown} is damaged: {error}",
            path=shown,
            hint="veo3dl left it untouched; restore it from a backup or move it aside",
        )
    if kind == "locked":
        return StorageError(
            f"the catalogue {shown} is locked: {error}", path=shown, hint=LOCKED_HINT
        )
    return StorageError(
        f"cannot read the catalogue {shown}: {error}",
        path=shown,
        hint=OPEN_HINT if kind in ("readonly", "cantopen") else None,
    )


def operation_error(error: sqlite3.Error, doing: str, shown: str | None) -> StorageError:
    """The error for *doing* (e.g. "recording downloads") on the catalogue at *shown*."""
    hint = {
        "locked": LOCKED_HINT,
        "readonly": "the catalogue or its folder is not writable",
        "cantopen": OPEN_HINT,
        "corrupt": "the catalogue is damaged; restore it or move it aside",
        "notadb": "the catalogue is damaged; restore it or move it aside",
    }.get(classify(error))
    where = f"{shown}: " if shown else ""
    return StorageError(f"{where}{doing} failed: {error}", path=shown, hint=hint)
