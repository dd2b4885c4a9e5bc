"""The catalogue's schema and its migrations, versioned by ``PRAGMA user_version``.

Version 0 is either an empty file or a database left by the seed desktop app:
the same ``veo3_image_generations`` table with fewer columns, duplicate rows
(a faulty pagination stored each image several times) and no unique index.
Migration 1 adopts either: it adds the missing columns, merges duplicates by
``(profile_id, name)`` — keeping the earliest row and any ``local_path`` found
on any copy — and only then creates the unique index.

Migration 2 adds what a sync needs to know about earlier syncs: a
``last_sync_seq`` column (the sequence number of the latest sync that listed
the row) and the ``veo3dl_sync_state`` table, one row per profile: the
sequence allocator and whether/when a full listing last completed (see
:mod:`veo3dl._sync_state`).

Each migration runs in one ``BEGIN IMMEDIATE`` transaction with the version
bump, so a crash leaves the database at the old version, never half-migrated.

A database at version 0 that holds tables but not ``veo3_image_generations``
belongs to another program: it is refused (:class:`UnusableDatabase`), not
extended with our table.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

import attrs
import sqlite_utils

__all__ = [
    "COLUMNS",
    "SCHEMA_VERSION",
    "STATE_TABLE",
    "TABLE",
    "MigrationReport",
    "UnusableDatabase",
    "check_usable",
    "migrate",
    "schema_version",
]

TABLE = "veo3_image_generations"
STATE_TABLE = "veo3dl_sync_state"

# Column -> SQLite type, as migration 1 creates them.  The first nine are the
# seed app's columns.  Frozen: later columns come with later migrations.
_V1_COLUMNS: dict[str, type] = {
    "id": str,
    "profile_id": str,
    "name": str,
    "aspect_ratio": str,
    "workflow_id": str,
    "media_key": str,
    "local_path": str,
    "fife_url": str,
    "created_at": str,
    "media_type": str,
    "project_id": str,
    "prompt": str,
    "seed": int,
    "model": str,
    "size_bytes": int,
    "sha256": str,
    "mime_type": str,
    "downloaded_at": str,
    "synced_at": str,
    "remote_state": str,
    "attempts": int,
    "last_error": str,
    "last_sync_id": str,
    "claimed_by": str,
    "claim_expires": float,
}
# Every column of the current schema.
COLUMNS: dict[str, type] = {**_V1_COLUMNS, "last_sync_seq": int}


@attrs.frozen
class MigrationReport:
    """What opening the catalogue changed: versions, and seed rows merged."""

    from_version: int
    to_version: int
    merged_duplicates: int = 0
    adopted_seed_table: bool = False

    @property
    def migrated(self) -> bool:
        """True when the schema was changed."""
        return self.to_version != self.from_version


class UnusableDatabase(ValueError):
    """A database this veo3dl may not use as a catalogue; ``hint`` says what to do."""

    def __init__(self, message: str, *, hint: str) -> None:
        super().__init__(message)
        self.hint = hint


def schema_version(conn: sqlite3.Connection) -> int:
    """The catalogue's schema version (``PRAGMA user_version``)."""
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def _user_objects(conn: sqlite3.Connection) -> list[str]:
    return [
        row[0]
        for row in conn.execute(
            "SELECT name FROM sqlite_master WHERE name NOT LIKE 'sqlite!_%' ESCAPE '!' ORDER BY name"
        )
    ]


def check_usable(conn: sqlite3.Connection, *, empty_ok: bool) -> None:
    """Raise :class:`UnusableDatabase` unless *conn* holds a catalogue (or, *empty_ok*, nothing).

    A newer schema than this veo3dl knows is refused, and so is a database
    with tables of its own but no ``veo3_image_generations`` (ours, or the
    seed app's): adding a table to another program's database would be wrong.
    """
    version = schema_version(conn)
    if version > SCHEMA_VERSION:
        raise UnusableDatabase(
            f"schema version {version} is newer than this veo3dl understands ({SCHEMA_VERSION})",
            hint="upgrade veo3dl",
        )
    if conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (TABLE,)
    ).fetchone():
        return
    objects = _user_objects(conn)
    if objects:
        shown = ", ".join(objects[:5]) + (", ..." if len(objects) > 5 else "")
        raise UnusableDatabase(
            f"not a veo3dl catalogue: it has no {TABLE} table, but other tables ({shown})",
            hint="veo3dl left it untouched; check --db, or give a new file for the catalogue",
        )
    if not empty_ok:
        raise UnusableDatabase(
            "no catalogue in it yet (an empty database)", hint="run `veo3dl sync` first"
        )


def _v1_create_or_adopt(db: sqlite_utils.Database) -> tuple[int, bool]:
    # Inside the migration's transaction, so that what is checked is what is changed.
    check_usable(db.conn, empty_ok=True)
    table = db[TABLE]
    adopted = table.exists()
    if not adopted:
        # A rowid table: "id" (a uuid, as in the seed app) needs no index of
        # its own; (profile_id, name) is the key every query uses.
        table.create(  # type: ignore[union-attr]
            _V1_COLUMNS,
            not_null={"id", "profile_id", "name"},
            defaults={"remote_state": "present", "attempts": 0},
        )
        merged = 0
    else:
        existing = set(table.columns_dict)
        for column, kind in _V1_COLUMNS.items():
            if column not in existing:
                table.add_column(column, kind)  # type: ignore[union-attr]
        db.execute(f"UPDATE {TABLE} SET remote_state = 'present' WHERE remote_state IS NULL")
        db.execute(f"UPDATE {TABLE} SET attempts = 0 WHERE attempts IS NULL")
        merged = _merge_duplicates(db)
    db.execute(
        f"CREATE UNIQUE INDEX IF NOT EXISTS {TABLE}_profile_name ON {TABLE} (profile_id, name)"
    )
    return merged, adopted


# The client removes every whitespace character from a name, inner line breaks
# included (see _protocol.clean_name); the seed's rows must match that.
_NO_WHITESPACE = "replace(replace(replace(replace(replace(name, ' ', ''), char(9), ''), char(10), ''), char(13), ''), char(12), '')"


def _merge_duplicates(db: sqlite_utils.Database) -> int:
    """Keep the earliest row of each (profile_id, name); carry a local_path over to it."""
    # Names from the seed may carry the stray whitespace the listing had.
    db.execute(f"UPDATE {TABLE} SET name = {_NO_WHITESPACE} WHERE name != {_NO_WHITESPACE}")
    db.execute(
        f"""
        UPDATE {TABLE} AS keeper
        SET local_path = (
            SELECT other.local_path FROM {TABLE} AS other
            WHERE other.profile_id IS keeper.profile_id AND other.name = keeper.name
              AND other.local_path IS NOT NULL AND other.local_path != ''
            ORDER BY other.rowid LIMIT 1)
        WHERE (keeper.local_path IS NULL OR keeper.local_path = '')
          AND keeper.rowid IN (SELECT min(rowid) FROM {TABLE} GROUP BY profile_id, name HAVING count(*) > 1)
        """
    )
    cursor = db.execute(
        f"DELETE FROM {TABLE} WHERE rowid NOT IN (SELECT min(rowid) FROM {TABLE} GROUP BY profile_id, name)"
    )
    return max(cursor.rowcount, 0)


def _v2_sync_state(db: sqlite_utils.Database) -> tuple[int, bool]:
    """The per-row sync sequence number and the per-profile sync state."""
    if "last_sync_seq" not in db[TABLE].columns_dict:
        db[TABLE].add_column("last_sync_seq", int)  # type: ignore[union-attr]
    # No row for a profile means no full listing is known to have completed:
    # its first incremental sync lists everything (a catalogue of the
    # previous version may hold the pages of an interrupted sync).
    db.execute(
        f"""CREATE TABLE IF NOT EXISTS {STATE_TABLE} (
            profile_id TEXT PRIMARY KEY,
            last_seq INTEGER NOT NULL DEFAULT 0,
            clean_seq INTEGER NOT NULL DEFAULT 0,
            full_seq INTEGER,
            full_at TEXT
        )"""
    )
    return 0, False


_MIGRATIONS: list[Callable[[sqlite_utils.Database], tuple[int, bool]]] = [
    _v1_create_or_adopt,
    _v2_sync_state,
]
SCHEMA_VERSION = len(_MIGRATIONS)


def migrate(db: sqlite_utils.Database) -> MigrationReport:
    """Bring *db* to :data:`SCHEMA_VERSION`, one transaction per step.

    A database newer than this veo3dl, or another program's, is left
    untouched: :class:`UnusableDatabase` (a ``ValueError``).
    """
    conn: sqlite3.Connection = db.conn
    start = schema_version(conn)
    if start > SCHEMA_VERSION:
        check_usable(conn, empty_ok=True)  # raises, saying why
    merged_total, adopted_any = 0, False
    version = start
    while version < SCHEMA_VERSION:
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Another process may have migrated while we waited for the lock.
            version = schema_version(conn)
            if version >= SCHEMA_VERSION:
                conn.execute("COMMIT")
                break
            merged, adopted = _MIGRATIONS[version](db)
            merged_total += merged
            adopted_any = adopted_any or adopted
            version += 1
            conn.execute(f"PRAGMA user_version = {version}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return MigrationReport(
        from_version=start,
        to_version=version,
        merged_duplicates=merged_total,
        adopted_seed_table=adopted_any,
    )
