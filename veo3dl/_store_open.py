"""Opening a catalogue file: connect, check the header, switch to WAL.

Each step fails with a :class:`~veo3dl.exceptions.StorageError` that names
the file and the real cause (see :mod:`veo3dl._store_errors`); a file that is
not a database is never written to.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from veo3dl._store_errors import OPEN_HINT, header_error
from veo3dl.exceptions import StorageError

__all__ = ["connect_catalogue", "switch_to_wal"]


def connect_catalogue(path: Path, timeout: float, *, read_only: bool = False) -> sqlite3.Connection:
    """Connect to the catalogue file at *path*, its header checked before anything is written.

    *read_only* opens with ``mode=ro`` (SQLite refuses every write and never
    creates the file); otherwise the file and its folder are created.
    """
    shown = str(path)
    if path.exists() and not path.is_file():
        raise StorageError(f"the catalogue path {shown} is not a file", path=shown)
    if read_only and not path.exists():
        raise StorageError(
            f"no catalogue at {shown}",
            path=shown,
            hint="run `veo3dl sync` first, or check --db",
        )
    try:
        if read_only:
            # mode=ro: SQLite itself refuses every write, and never creates the file.
            uri = f"{path.absolute().as_uri()}?mode=ro"
            conn = sqlite3.connect(uri, uri=True, timeout=timeout, check_same_thread=False)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(path, timeout=timeout, check_same_thread=False)
    except (OSError, sqlite3.Error) as error:
        raise StorageError(
            f"cannot open the catalogue {shown}: {error}",
            path=shown,
            hint=OPEN_HINT,
        ) from None
    try:
        # Reads the header only: a corrupt file fails here, before any write.
        conn.execute("PRAGMA schema_version").fetchone()
    except sqlite3.DatabaseError as error:
        conn.close()
        raise header_error(error, shown) from None
    return conn


def switch_to_wal(conn: sqlite3.Connection, timeout: float) -> None:
    """Put the catalogue in WAL mode, waiting up to *timeout* for other openers.

    The switch needs the file to itself, and SQLite answers "database is
    locked" at once (the busy timeout does not cover it) while another
    process is opening or migrating the same new catalogue.
    """
    deadline = time.monotonic() + timeout
    pause = 0.01
    while True:
        try:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) and "busy" not in str(error):
                raise
            mode = None
        if mode is not None and str(mode).lower() in ("wal", "memory"):
            return
        if time.monotonic() >= deadline:
            raise sqlite3.OperationalError("database is locked")
        time.sleep(pause)  # another process holds the file for a moment: wait, then ask again
        pause = min(pause * 2, 0.2)
