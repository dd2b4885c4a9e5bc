"""ImageStore: schema, seed-app adoption, queries, and refusing a corrupt file."""

from __future__ import annotations

import sqlite3
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pytest
import sqlite_utils

from veo3dl import ConfigError, ImageStore, MediaItem, MediaType, StorageError
from veo3dl._records import DownloadRecord
from veo3dl._schema import COLUMNS, SCHEMA_VERSION, STATE_TABLE, TABLE, _v1_create_or_adopt
from veo3dl._sync_state import read_sync_state

SEED_COLUMNS = "id TEXT, profile_id TEXT, name TEXT, aspect_ratio TEXT, workflow_id TEXT, media_key TEXT, local_path TEXT, fife_url TEXT, created_at TEXT"


def item(n: int, **kw) -> MediaItem:
    return MediaItem(
        name=f"CAMa{n:03d}",
        media_type=MediaType.IMAGE,
        media_key=f"key-{n}",
        create_time=datetime(2025, 10, 20 + n % 5, 12, n % 60, tzinfo=timezone.utc),
        **kw,
    )


def build_seed_database(path: Path) -> None:
    """A database the way the seed app left it: 18 images stored 5 times, no unique index."""
    conn = sqlite3.connect(path)
    conn.execute(f"CREATE TABLE {TABLE} ({SEED_COLUMNS})")
    for copy in range(5):
        for n in range(18):
            local = (
                f"/home/u/Pictures/flow/2025-10-2{n % 5}/key-{n}.png"
                if copy == 2 and n % 3 == 0
                else None
            )
            name = f"CAMa{n:03d}" + ("\n" if copy == 4 else "")
            conn.execute(
                f"INSERT INTO {TABLE} VALUES (?, 'default', ?, 'IMAGE_ASPECT_RATIO_SQUARE', 'wf', ?, ?, NULL, ?)",
                (str(uuid.uuid4()), name, f"key-{n}", local, f"2025-10-2{n % 5}T10:00:00Z"),
            )
    conn.commit()
    conn.close()


def test_fresh_database_schema(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "cat.db")
    db = store.db
    assert set(db[TABLE].columns_dict) == set(COLUMNS)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA busy_timeout").fetchone()[0] == 30000
    unique = [i for i in db[TABLE].indexes if i.unique]
    assert ["profile_id", "name"] in [i.columns for i in unique]
    assert store.migration.from_version == 0 and not store.migration.adopted_seed_table
    store.close()
    again = ImageStore(tmp_path / "cat.db")
    assert not again.migration.migrated
    again.close()


def test_seed_database_is_adopted_90_rows_to_18(tmp_path: Path) -> None:
    path = tmp_path / "seed.db"
    build_seed_database(path)
    with ImageStore(path) as store:
        assert store.migration.adopted_seed_table
        assert store.migration.merged_duplicates == 72
        assert store.migration.to_version == SCHEMA_VERSION
        assert set(store.db[TABLE].columns_dict) == set(COLUMNS)
        assert store.db[STATE_TABLE].exists()
        assert not read_sync_state(store, "default").gapless  # never fully listed by veo3dl
        rows = store.items("default")
        assert len(rows) == 18
        assert len({r.name for r in rows}) == 18
        kept_paths = {r.name: r.local_path for r in rows if r.local_path}
        assert kept_paths == {
            f"CAMa{n:03d}": f"/home/u/Pictures/flow/2025-10-2{n % 5}/key-{n}.png"
            for n in range(0, 18, 3)
        }
        assert all(r.remote_state == "present" and r.attempts == 0 for r in rows)
        with pytest.raises(sqlite3.IntegrityError):
            store.db.execute(
                f"INSERT INTO {TABLE} (id, profile_id, name) VALUES ('x', 'default', 'CAMa000')"
            )
    # The earliest copy of each name is the one kept.
    conn = sqlite3.connect(path)
    assert conn.execute(f"SELECT count(*) FROM {TABLE} WHERE rowid > 18").fetchone()[0] == 0
    conn.close()


def test_corrupt_file_is_refused_and_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "broken.db"
    content = b"this is not a database" * 500
    path.write_bytes(content)
    with pytest.raises(StorageError, match="not a SQLite database") as info:
        ImageStore(path)
    assert info.value.path == str(path)
    assert path.read_bytes() == content
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.db"]


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "future.db"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 5}")
    conn.close()
    with pytest.raises(StorageError, match="newer"):
        ImageStore(path)


def test_accepts_an_open_sqlite_utils_database(tmp_path: Path) -> None:
    db = sqlite_utils.Database(tmp_path / "x.db")
    store = ImageStore(db)
    assert db[TABLE].exists()
    store.close()
    db.execute("SELECT 1")  # the store did not close a connection it did not open


def test_upsert_refreshes_metadata_and_never_touches_download_fields(tmp_path: Path) -> None:
    with ImageStore(tmp_path / "c.db") as store:
        with store.transaction():
            counts = store.upsert_items(
                "p",
                [item(1, fife_url="https://x/1?Signature=a"), item(2)],
                sync_seq=1,
                synced_at="t1",
            )
        assert (counts.inserted, counts.updated) == (2, 0)
        store.record_downloads(
            "p",
            [
                DownloadRecord(
                    name="CAMa001",
                    ok=True,
                    local_path="2025-10-21/key-1.png",
                    size_bytes=10,
                    sha256="ab" * 32,
                    mime_type="image/png",
                    downloaded_at="t",
                )
            ],
        )
        with store.transaction():
            counts = store.upsert_items(
                "p", [item(1, aspect_ratio="NEW"), item(3)], sync_seq=2, synced_at="t2"
            )
        assert (counts.inserted, counts.updated) == (1, 1)
        one = store.get("p", "CAMa001")
        assert one is not None
        assert one.aspect_ratio == "NEW"
        assert one.fife_url == "https://x/1?Signature=a"  # kept when the listing had none
        assert (one.local_path, one.size_bytes, one.sha256) == (
            "2025-10-21/key-1.png",
            10,
            "ab" * 32,
        )
        assert "Signature=[REDACTED]" in repr(one)


def build_version_1_catalogue(path: Path) -> None:
    """A catalogue as veo3dl left it before sync numbers: schema version 1, rows stamped by uuid."""
    db = sqlite_utils.Database(path)
    with db.conn:
        _v1_create_or_adopt(db)
        db.execute("PRAGMA user_version = 1")
    for n in range(4):
        db.execute(
            f"INSERT INTO {TABLE} (id, profile_id, name, media_key, local_path, remote_state, "
            "attempts, last_sync_id) VALUES (?, 'p', ?, ?, ?, ?, 0, 'a1b2')",
            (f"id{n}", f"CAMa{n:03d}", f"key-{n}", "d/0.png" if n == 0 else None,
             "missing" if n == 3 else "present"),
        )  # fmt: skip
    db.conn.commit()
    db.conn.close()


def test_version_1_catalogue_is_migrated_keeping_every_row(tmp_path: Path) -> None:
    path = tmp_path / "v1.db"
    build_version_1_catalogue(path)
    content = path.read_bytes()
    with ImageStore(path, read_only=True) as store:  # migrated in memory only
        assert store.migration.from_version == 1 and store.counts("p").items == 4
    assert path.read_bytes() == content
    with ImageStore(path) as store:
        assert (store.migration.from_version, store.migration.to_version) == (1, SCHEMA_VERSION)
        assert set(store.db[TABLE].columns_dict) == set(COLUMNS)
        rows = {r.name: r for r in store.items("p")}
        assert len(rows) == 4 and rows["CAMa000"].local_path == "d/0.png"
        assert rows["CAMa003"].remote_state == "missing"
        state = read_sync_state(store, "p")
        assert (state.last_seq, state.full_seq) == (0, None) and not state.gapless
        # Unnumbered rows count as listed before any sync: a complete listing marks them.
        with store.transaction():
            store.upsert_items("p", [item(0), item(1)], sync_seq=1, synced_at="t")
            assert store.mark_missing("p", 1) == 1  # CAMa002; CAMa003 was missing already
    with ImageStore(path) as store:
        assert not store.migration.migrated


def test_mark_missing_and_back(tmp_path: Path) -> None:
    with ImageStore(tmp_path / "c.db") as store:
        with store.transaction():
            store.upsert_items("p", [item(1), item(2)], sync_seq=1, synced_at="t")
            store.upsert_items("other", [item(9)], sync_seq=1, synced_at="t")
        with store.transaction():
            store.upsert_items("p", [item(1)], sync_seq=2, synced_at="t")
            assert store.mark_missing("p", 2) == 1
        assert store.get("p", "CAMa002").remote_state == "missing"
        assert store.get("other", "CAMa009").remote_state == "present"
        with store.transaction():
            store.upsert_items("p", [item(2)], sync_seq=3, synced_at="t")
        assert store.get("p", "CAMa002").remote_state == "present"


def test_a_row_listed_by_a_later_sync_is_not_marked_missing(tmp_path: Path) -> None:
    with ImageStore(tmp_path / "c.db") as store:
        with store.transaction():
            store.upsert_items("p", [item(1), item(2)], sync_seq=5, synced_at="t")
            # Sync 3 stores its pages after sync 5 did: the row keeps number 5.
            store.upsert_items("p", [item(1), item(3)], sync_seq=3, synced_at="t")
        rows = store.db.execute(f"SELECT name, last_sync_seq FROM {TABLE} ORDER BY name")
        assert rows.fetchall() == [("CAMa001", 5), ("CAMa002", 5), ("CAMa003", 3)]
        with store.transaction():
            assert store.mark_missing("p", 3) == 0
            assert store.mark_missing("p", 5) == 1
        assert store.get("p", "CAMa003").remote_state == "missing"


def test_queries(tmp_path: Path) -> None:
    with ImageStore(tmp_path / "c.db") as store:
        with store.transaction():
            store.upsert_items("p", [item(n) for n in range(6)], sync_seq=1, synced_at="t")
        store.record_downloads(
            "p",
            [
                DownloadRecord(
                    name="CAMa000",
                    ok=True,
                    local_path="a/b.png",
                    size_bytes=100,
                    sha256="0" * 64,
                    mime_type="image/png",
                    downloaded_at="t",
                ),
                DownloadRecord(name="CAMa001", ok=False, error="IntegrityError: an HTML page"),
            ],
        )
        with store.transaction():
            store.mark_missing("p", 99)
        counts = store.counts("p")
        assert (counts.items, counts.downloaded, counts.failed, counts.missing, counts.bytes) == (
            6,
            1,
            1,
            6,
            100,
        )
        assert counts.pending == 0  # everything is missing remotely
        assert [p.name for p in store.pending("p")] == []
        dates = store.by_date("p")
        assert sum(d.items for d in dates) == 6 and dates == sorted(
            dates, key=lambda d: d.date, reverse=True
        )
        failed = store.get("p", "CAMa001")
        assert failed.attempts == 1 and "HTML" in failed.last_error
        assert store.profiles() == ["p"]
        assert store.forget("p") == 6
        assert store.items("p") == []


def test_forget_never_deletes_files(tmp_path: Path) -> None:
    media = tmp_path / "media" / "a.png"
    media.parent.mkdir()
    media.write_bytes(b"png")
    with ImageStore(tmp_path / "c.db") as store:
        with store.transaction():
            store.upsert_items("p", [item(1)], sync_seq=1, synced_at="t")
        store.record_downloads(
            "p", [DownloadRecord(name="CAMa001", ok=True, local_path="a.png", size_bytes=3)]
        )
        store.forget("p")
    assert media.read_bytes() == b"png"


def test_failed_transaction_leaves_nothing(tmp_path: Path) -> None:
    with ImageStore(tmp_path / "c.db") as store:
        with pytest.raises(RuntimeError), store.transaction():
            store.upsert_items("p", [item(1)], sync_seq=1, synced_at="t")
            raise RuntimeError("interrupted")
        assert store.items("p") == []


def test_seed_names_with_inner_line_breaks_match_the_clean_names(tmp_path: Path) -> None:
    path = tmp_path / "seed.db"
    conn = sqlite3.connect(path)
    conn.execute(f"CREATE TABLE {TABLE} ({SEED_COLUMNS})")
    conn.execute(
        f"INSERT INTO {TABLE} VALUES ('1', 'p', ?, NULL, NULL, 'k', '/old/file.png', NULL, '2025-10-29T10:00:00Z')",
        ["CAMaFirstPart\r\nSecond Part\t"],
    )
    conn.commit()
    conn.close()
    with ImageStore(path) as store:
        with store.transaction():
            counts = store.upsert_items(
                "p",
                [
                    MediaItem(
                        name="CAMaFirstPartSecondPart",
                        media_type=MediaType.IMAGE,
                        media_key="k",
                        create_time=datetime(2025, 10, 29, tzinfo=timezone.utc),
                    )
                ],
                sync_seq=1,
                synced_at="t",
            )
        assert (counts.inserted, counts.updated) == (0, 1)
        [row] = store.items("p")
        assert row.name == "CAMaFirstPartSecondPart" and row.local_path == "/old/file.png"


# ----------------------------------------------- what opening reports, and refuses


def test_locked_database_is_reported_as_locked_not_as_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "held.db"
    holder = sqlite3.connect(path)
    holder.execute("CREATE TABLE t (x)")
    holder.commit()
    holder.execute("BEGIN EXCLUSIVE")  # another program (the seed app, say) holds it
    try:
        with pytest.raises(StorageError) as info:
            ImageStore(path, timeout=0.1)
    finally:
        holder.rollback()
        holder.close()
    text = str(info.value)
    assert "not a SQLite database" not in text
    assert "locked" in text and str(path) in text and "again" in text
    assert info.value.path == str(path)


def test_unopenable_database_reports_the_real_cause_and_stays_untouched(tmp_path: Path) -> None:
    path = tmp_path / "cat.db"
    with ImageStore(path) as store, store.transaction():
        store.upsert_items("p", [item(1)], sync_seq=1, synced_at="t")
    content = path.read_bytes()
    # SQLite cannot open the write-ahead log beside a WAL database (as on a
    # read-only folder, or one the user may not write to).
    (tmp_path / "cat.db-wal").mkdir()
    with pytest.raises(StorageError) as info:
        ImageStore(path)
    text = str(info.value)
    assert "not a SQLite database" not in text
    assert "unable to open" in text and str(path) in text
    assert "permission" in text or "writable" in text
    assert path.read_bytes() == content
    (tmp_path / "cat.db-wal").rmdir()
    with ImageStore(path) as store:
        assert [i.name for i in store.items("p")] == ["CAMa001"]


def build_foreign_database(path: Path) -> bytes:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT)")
    conn.execute("INSERT INTO notes (text) VALUES ('mine')")
    conn.commit()
    conn.close()
    return path.read_bytes()


def test_foreign_database_is_refused_and_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    content = build_foreign_database(path)
    with pytest.raises(StorageError, match="not a veo3dl catalogue") as info:
        ImageStore(path)
    assert "notes" in str(info.value) and str(path) in str(info.value)
    assert path.read_bytes() == content
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 0
    assert [r[0] for r in conn.execute("SELECT name FROM sqlite_master")] == ["notes"]
    conn.close()


def test_seed_database_with_other_tables_is_still_adopted(tmp_path: Path) -> None:
    path = tmp_path / "seed.db"
    build_seed_database(path)
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE settings (key TEXT, value TEXT)")
    conn.commit()
    conn.close()
    with ImageStore(path) as store:
        assert store.migration.adopted_seed_table and len(store.items("default")) == 18


# ------------------------------------------------------------------ read-only


def test_read_only_reports_a_seed_database_without_changing_it(tmp_path: Path) -> None:
    path = tmp_path / "seed.db"
    build_seed_database(path)
    content = path.read_bytes()
    with ImageStore(path, read_only=True) as store:
        assert store.read_only
        assert store.migration.from_version == 0 and store.migration.merged_duplicates == 72
        assert store.counts("default").items == 18  # as a sync would see it, duplicates merged
        assert len(store.items("default")) == 18
        with pytest.raises(StorageError, match="read-only"), store.transaction():
            pass
    assert path.read_bytes() == content
    assert sorted(p.name for p in tmp_path.iterdir()) == ["seed.db"]


def test_read_only_current_catalogue_keeps_its_journal_mode(tmp_path: Path) -> None:
    path = tmp_path / "cat.db"
    with ImageStore(path) as store:
        with store.transaction():
            store.upsert_items("p", [item(1), item(2)], sync_seq=1, synced_at="t")
        store.db.execute("PRAGMA journal_mode = DELETE")
    content = path.read_bytes()
    with ImageStore(path, read_only=True) as store:
        assert not store.migration.migrated
        assert store.counts("p").items == 2
    assert path.read_bytes() == content


@pytest.mark.parametrize("kind", ["foreign", "empty", "missing", "newer"])
def test_read_only_refuses_what_it_cannot_report(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "x.db"
    if kind == "foreign":
        build_foreign_database(path)
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "newer":
        conn = sqlite3.connect(path)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
        conn.close()
    before = path.read_bytes() if path.exists() else None
    expected = {
        "foreign": "not a veo3dl catalogue",
        "empty": "no catalogue in it yet",
        "missing": "no catalogue at",
        "newer": "newer",
    }[kind]
    with pytest.raises(StorageError, match=expected) as info:
        ImageStore(path, read_only=True)
    assert str(path) in str(info.value)
    assert (path.read_bytes() if path.exists() else None) == before


def test_mark_missing_refuses_anything_but_a_sync_number(tmp_path: Path) -> None:
    with ImageStore(tmp_path / "c.db") as store:
        for wrong in ("sync-id", 1.5, True, None):
            with pytest.raises(ConfigError, match="sync_seq"):
                store.mark_missing("me", wrong)  # type: ignore[arg-type]


def test_opening_waits_for_another_opener_instead_of_failing(tmp_path: Path) -> None:
    """Opening waits while another connection holds the new file, rather than failing."""
    db = tmp_path / "c.db"
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # as another process creating the catalogue would
    outcome: list[object] = []

    def open_store() -> None:
        try:
            with ImageStore(db, timeout=30) as store:
                outcome.append(store.counts("me").items)
        except Exception as error:
            outcome.append(error)

    opener = threading.Thread(target=open_store)
    opener.start()
    deadline = time.monotonic() + 0.5
    while time.monotonic() < deadline and not outcome:  # it must still be waiting
        opener.join(0.05)
    assert outcome == [], outcome
    holder.execute("COMMIT")
    holder.close()
    opener.join(30)
    assert outcome == [0]
