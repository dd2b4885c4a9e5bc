"""ImageStore: the SQLite catalogue of a Flow library (sqlite-utils).

One row per ``(profile_id, name)`` in ``veo3_image_generations`` (the seed
app's table, extended; see :mod:`veo3dl._schema`).  The store never deletes a
row on its own: an item that vanished from Flow is marked
``remote_state='missing'`` and keeps its file and ``local_path``; only
:meth:`ImageStore.forget` deletes rows, and never files.

Writes happen in short ``BEGIN IMMEDIATE`` transactions (one per batch of
listing pages, one per batch of download results) in WAL mode with a busy timeout, so
two processes writing the same catalogue wait for each other instead of
failing with "database is locked".
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import uuid
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import attrs
import sqlite_utils

from veo3dl._models import MediaItem
from veo3dl._records import DateCounts, DownloadRecord, StoreCounts, StoredItem
from veo3dl._schema import (
    SCHEMA_VERSION,
    STATE_TABLE,
    TABLE,
    MigrationReport,
    UnusableDatabase,
    check_usable,
    migrate,
    schema_version,
)
from veo3dl._store_errors import operation_error
from veo3dl._store_open import connect_catalogue, switch_to_wal
from veo3dl.exceptions import ConfigError, StorageError

__all__ = ["ImageStore", "UpsertCounts", "iso_utc"]

_ITEM_COLUMNS = (
    "media_type", "media_key", "workflow_id", "project_id", "aspect_ratio", "created_at", "fife_url",
)  # fmt: skip
_SYNC_COLUMNS = ("synced_at", "last_sync_id", "last_sync_seq")


def iso_utc(moment: datetime | None = None) -> str:
    """*moment* (default: now) as ISO 8601 UTC with a ``Z``, to the second."""
    moment = moment or datetime.now(timezone.utc)
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@attrs.frozen
class UpsertCounts:
    """How many rows a page of items inserted and refreshed."""

    inserted: int
    updated: int

    @property
    def all_known(self) -> bool:
        """True when every item was in the catalogue already."""
        return self.inserted == 0


class ImageStore:
    """The catalogue, in a SQLite file (or an open sqlite-utils ``Database``).

    Opening migrates the schema (``migration`` says what changed, e.g. how
    many duplicate rows of a seed-app database were merged).  A file that is
    not a SQLite database, or another program's database, is refused with
    :class:`StorageError` and left untouched; so is one SQLite cannot open
    (locked, unreadable), with the cause.  ``db`` is the sqlite-utils
    database, for your own queries.

    With *read_only* (a file path only) the file is never written: no
    migration, no journal mode switch.  A catalogue in an older format is
    read into memory and migrated there, so that it reads as a sync would
    leave it; writing to a read-only store raises :class:`StorageError`.
    """

    def __init__(
        self,
        path_or_database: str | Path | sqlite_utils.Database,
        *,
        timeout: float = 30.0,
        read_only: bool = False,
    ) -> None:
        self._lock = threading.RLock()
        self.read_only = read_only
        if isinstance(path_or_database, sqlite_utils.Database) and not read_only:
            self.path: Path | None = None
            self.db = path_or_database
            conn = self.db.conn
            self._owns_connection = False
        elif isinstance(path_or_database, (str, Path)):
            self.path = Path(path_or_database)
            conn = connect_catalogue(self.path, timeout, read_only=read_only)
            self.db = sqlite_utils.Database(conn)
            self._owns_connection = True
        elif read_only:
            raise ConfigError("a read-only ImageStore takes a file path")
        else:
            raise ConfigError("ImageStore takes a file path or a sqlite_utils.Database")
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
            if read_only:
                self.migration: MigrationReport = self._open_read_only(conn)
                return
            # Before the journal mode switch, which would already write to someone else's file.
            check_usable(conn, empty_ok=True)
            switch_to_wal(conn, timeout)
            conn.execute("PRAGMA synchronous = NORMAL")
            self.migration = migrate(self.db)
        except UnusableDatabase as error:
            self.close()
            raise StorageError(f"{self._where}{error}", path=self._shown, hint=error.hint) from None
        except sqlite3.Error as error:
            self.close()
            raise self._storage_error(error, "opening the catalogue") from None

    def _open_read_only(self, conn: sqlite3.Connection) -> MigrationReport:
        check_usable(conn, empty_ok=False)
        version = schema_version(conn)
        if version == SCHEMA_VERSION:
            return MigrationReport(from_version=version, to_version=version)
        # An older format: migrate a copy in memory (catalogues are small),
        # so the reports count what a sync would keep, and the file stays as it is.
        memory = sqlite3.connect(":memory:", check_same_thread=False)
        try:
            conn.backup(memory)
        except BaseException:
            memory.close()
            raise
        conn.close()
        self.db = sqlite_utils.Database(memory)
        return migrate(self.db)

    @property
    def _shown(self) -> str | None:
        return None if self.path is None else str(self.path)

    @property
    def _where(self) -> str:
        return "" if self.path is None else f"{self.path}: "

    def _storage_error(self, error: sqlite3.Error, doing: str) -> StorageError:
        return operation_error(error, doing, self._shown)

    def close(self) -> None:
        """Close the connection (when the store opened it)."""
        if self._owns_connection:
            self.db.conn.close()

    def __enter__(self) -> ImageStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ImageStore({self._shown or self.db!r})"

    # --------------------------------------------------------- transactions

    @contextlib.contextmanager
    def transaction(self, doing: str = "writing the catalogue") -> Iterator[sqlite_utils.Database]:
        """One ``BEGIN IMMEDIATE`` transaction: all or nothing, waiting for other writers."""
        if self.read_only:
            raise StorageError(
                f"{self._where}{doing} failed: the catalogue was opened read-only",
                path=self._shown,
            )
        with self._lock:
            conn = self.db.conn
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as error:
                raise self._storage_error(error, doing) from None
            try:
                yield self.db
                conn.execute("COMMIT")
            except sqlite3.Error as error:
                conn.execute("ROLLBACK")
                raise self._storage_error(error, doing) from None
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        with self._lock:
            try:
                return list(self.db.query(sql, params))
            except sqlite3.Error as error:
                raise self._storage_error(error, "reading the catalogue") from None

    # ---------------------------------------------------------------- sync

    def upsert_items(
        self,
        profile_id: str,
        items: Sequence[MediaItem],
        *,
        sync_seq: int,
        synced_at: str,
        sync_id: str | None = None,
    ) -> UpsertCounts:
        """Insert new items and refresh known ones, in the caller's transaction.

        Metadata and ``fife_url`` are refreshed; ``local_path``, ``sha256``,
        ``size_bytes`` and ``downloaded_at`` are never touched.  A row's
        ``last_sync_seq`` becomes *sync_seq* unless a later sync listed it
        already (it is never lowered; see :meth:`mark_missing`).
        """
        if not items:
            return UpsertCounts(0, 0)
        known = self.existing_names(profile_id, [item.name for item in items])
        rows = [
            (
                uuid.uuid4().hex, profile_id, item.name, item.media_type.value, item.media_key,
                item.workflow_id, item.project_id, item.aspect_ratio, iso_utc(item.create_time),
                item.fife_url, synced_at, sync_id, sync_seq,
            )
            for item in items
        ]  # fmt: skip
        columns = ", ".join(("id", "profile_id", "name", *_ITEM_COLUMNS, *_SYNC_COLUMNS))
        refresh = ", ".join(
            f"{c} = coalesce(excluded.{c}, {c})" for c in _ITEM_COLUMNS
        )  # an item without a fifeUrl this time keeps the last known one
        self.db.conn.executemany(
            f"INSERT INTO {TABLE} ({columns}, remote_state) VALUES ({', '.join('?' * 13)}, 'present') "
            f"ON CONFLICT(profile_id, name) DO UPDATE SET {refresh}, synced_at = excluded.synced_at, "
            "last_sync_id = excluded.last_sync_id, remote_state = 'present', "
            "last_sync_seq = max(coalesce(last_sync_seq, 0), excluded.last_sync_seq)",
            rows,
        )
        inserted = sum(1 for item in items if item.name not in known)
        return UpsertCounts(inserted=inserted, updated=len(items) - inserted)

    def existing_names(self, profile_id: str, names: Sequence[str]) -> set[str]:
        """Which of *names* the catalogue already holds for *profile_id*."""
        found: set[str] = set()
        for start in range(0, len(names), 500):
            chunk = list(names[start : start + 500])
            marks = ", ".join("?" * len(chunk))
            rows = self.db.conn.execute(
                f"SELECT name FROM {TABLE} WHERE profile_id = ? AND name IN ({marks})",
                [profile_id, *chunk],
            )
            found.update(row[0] for row in rows)
        return found

    def mark_missing(self, profile_id: str, sync_seq: int) -> int:
        """Mark items a complete listing (sync *sync_seq*) did not see as missing; never delete.

        Only rows no sync numbered *sync_seq* or later listed: a row an
        overlapping later sync listed stays present.  In the caller's transaction.
        """
        if isinstance(sync_seq, bool) or not isinstance(sync_seq, int):
            # Compared with an integer column, a string would mark every row.
            raise ConfigError(f"sync_seq must be the sync's number, not {type(sync_seq).__name__}")
        cursor = self.db.conn.execute(
            f"UPDATE {TABLE} SET remote_state = 'missing' WHERE profile_id = ? "
            "AND remote_state != 'missing' AND coalesce(last_sync_seq, 0) < ?",
            (profile_id, sync_seq),
        )
        return max(cursor.rowcount, 0)

    # ------------------------------------------------------------ downloads

    def record_downloads(self, profile_id: str, records: Iterable[DownloadRecord]) -> int:
        """Record a batch of download outcomes in one transaction; return rows changed."""
        records = list(records)
        if not records:
            return 0
        with self.transaction("recording downloads") as db:
            changed = 0
            for record in records:
                changed += db.conn.execute(*record.update_statement(TABLE, profile_id)).rowcount
        return changed

    # -------------------------------------------------------------- queries

    def get(self, profile_id: str, name: str) -> StoredItem | None:
        """One item by name, or ``None``."""
        rows = self._query(
            f"SELECT * FROM {TABLE} WHERE profile_id = ? AND name = ?", (profile_id, name)
        )
        return StoredItem.from_row(rows[0]) if rows else None

    def items(
        self,
        profile_id: str,
        *,
        names: Sequence[str] | None = None,
        remote_state: str | None = None,
    ) -> list[StoredItem]:
        """Items of *profile_id*, newest first, optionally only *names* or one remote state."""
        sql = f"SELECT * FROM {TABLE} WHERE profile_id = ?"
        params: list[Any] = [profile_id]
        if remote_state is not None:
            sql += " AND remote_state = ?"
            params.append(remote_state)
        rows = self._query(sql + " ORDER BY created_at DESC, name", params)
        items = [StoredItem.from_row(row) for row in rows]
        if names is not None:
            wanted = set(names)
            items = [item for item in items if item.name in wanted]
        return items

    def pending(self, profile_id: str, *, names: Sequence[str] | None = None) -> list[StoredItem]:
        """Items present on Flow with no ``local_path`` yet, newest first."""
        return [
            item
            for item in self.items(profile_id, names=names, remote_state="present")
            if not item.local_path
        ]

    def counts(self, profile_id: str) -> StoreCounts:
        """Totals for *profile_id*: items, downloaded, pending, failed, missing, bytes."""
        [row] = self._query(
            f"""SELECT count(*) AS items,
                   count(local_path) AS downloaded,
                   sum(local_path IS NULL AND remote_state = 'present') AS pending,
                   sum(local_path IS NULL AND last_error IS NOT NULL) AS failed,
                   sum(remote_state = 'missing') AS missing,
                   coalesce(sum(CASE WHEN local_path IS NOT NULL THEN size_bytes END), 0) AS bytes
                FROM {TABLE} WHERE profile_id = ?""",
            (profile_id,),
        )
        return StoreCounts(**{key: int(value or 0) for key, value in row.items()})

    def by_date(self, profile_id: str) -> list[DateCounts]:
        """Per creation date (UTC): items, downloaded and bytes, newest first."""
        rows = self._query(
            f"""SELECT substr(created_at, 1, 10) AS date, count(*) AS items, count(local_path) AS downloaded,
                   coalesce(sum(CASE WHEN local_path IS NOT NULL THEN size_bytes END), 0) AS bytes
                FROM {TABLE} WHERE profile_id = ? GROUP BY date ORDER BY date DESC""",
            (profile_id,),
        )
        return [
            DateCounts(
                date=row["date"] or "unknown",
                items=row["items"],
                downloaded=row["downloaded"],
                bytes=row["bytes"],
            )
            for row in rows
        ]

    def profiles(self) -> list[str]:
        """Every profile id the catalogue holds."""
        return [
            row["profile_id"]
            for row in self._query(f"SELECT DISTINCT profile_id FROM {TABLE} ORDER BY 1")
        ]

    def forget(self, profile_id: str) -> int:
        """Delete *profile_id*'s records (the seed's "force refresh"); files stay on disk."""
        with self.transaction("forgetting a profile") as db:
            # An empty catalogue is not a complete listing: the next incremental sync lists all.
            db.conn.execute(
                f"UPDATE {STATE_TABLE} SET full_seq = NULL, full_at = NULL WHERE profile_id = ?",
                (profile_id,),
            )
            return max(
                db.conn.execute(
                    f"DELETE FROM {TABLE} WHERE profile_id = ?", (profile_id,)
                ).rowcount,
                0,
            )
