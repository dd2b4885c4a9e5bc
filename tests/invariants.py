"""The invariants every chaos scenario checks: the mirror is never wrong.

* every row with a ``local_path`` has its file, with the recorded size and SHA-256;
* every file under the storage root belongs to exactly one row;
* no part file is left once a run has completed;
* no two rows share ``(profile_id, name)``;
* the database passes SQLite's own integrity check.

(That no worker process outlives a run is checked by the tests themselves,
with ``conftest.wait_until_gone``.)
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections import Counter
from pathlib import Path, PurePosixPath

from veo3dl._schema import TABLE


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def check(
    db: Path, root: Path, *, completed: bool = True, allow_unrecorded: bool = False
) -> dict[str, Path]:
    """Assert the invariants; return the recorded files by item name.

    *completed* False (right after a kill) tolerates part files;
    *allow_unrecorded* tolerates whole files a killed run wrote but did not
    record yet (the next run adopts them).
    """
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        rows = conn.execute(
            f"SELECT profile_id, name, local_path, size_bytes, sha256 FROM {TABLE}"
        ).fetchall()
    finally:
        conn.close()
    duplicates = [key for key, n in Counter((p, n) for p, n, *_ in rows).items() if n > 1]
    assert not duplicates, f"duplicate rows: {duplicates[:5]}"
    recorded: dict[str, Path] = {}
    owners: Counter[Path] = Counter()
    for _profile, name, local_path, size, digest in rows:
        if not local_path:
            continue
        path = (root / PurePosixPath(local_path)).resolve()
        assert path.is_file(), f"{name}: recorded file {local_path} is missing"
        assert path.stat().st_size == size, f"{name}: size {path.stat().st_size} != recorded {size}"
        assert _sha256(path) == digest, f"{name}: SHA-256 does not match the record"
        assert path.is_relative_to(root.resolve()), f"{name}: {path} is outside the storage root"
        recorded[name] = path
        owners[path] += 1
    assert not [p for p, n in owners.items() if n > 1], "two rows point at one file"
    files = [p for p in root.rglob("*") if p.is_file()] if root.exists() else []
    parts = [p for p in files if p.name.endswith(".part")]
    if completed:
        assert not parts, f"part files left after a completed run: {parts[:3]}"
    unowned = [p for p in files if p not in parts and p.resolve() not in owners]
    if not allow_unrecorded:
        assert not unowned, f"files that belong to no row: {unowned[:3]}"
    return recorded
