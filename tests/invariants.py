"""The invariants every chaos scenario checks: the mirror is never wrong, nothing leaks.

:func:`check` — the catalogue and the storage root agree:

* every row with a ``local_path`` has its file, with the recorded size and SHA-256;
* every file under the storage root belongs to exactly one row;
* no part file is left once a run has completed;
* no two rows share ``(profile_id, name)``;
* the database passes SQLite's own integrity check.

:func:`assert_no_orphans` — no process outlives its run: the processes seen
during a run, and every process carrying the run's tag (an environment
variable its children inherit, so a worker re-parented to init after its
parent was killed is still found), are gone within a deadline.

:func:`assert_no_secret` / :func:`catalogue_text` — no cookie, bearer token
or API key appears in logs, results or the database file.
"""

from __future__ import annotations

import hashlib
import os
import re
import sqlite3
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

import psutil

from veo3dl._schema import TABLE

TAG = "VEO3DL_TEST_TAG"
"""The environment variable that marks every process of one test run."""
TOKEN_SHAPE = re.compile(r"ya29\.[A-Za-z0-9_-]{8,}")
SIGNATURE = re.compile(r"Signature=(?!\[REDACTED\])[A-Za-z0-9%]{8,}")


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
    every = [p for p in root.rglob("*") if p.is_file()] if root.exists() else []
    parts = [p for p in every if p.name.endswith(".part")]
    files = [p for p in every if p not in parts]
    if completed:
        assert not parts, f"part files left after a completed run: {parts[:3]}"
    unowned = [p for p in files if p.resolve() not in owners]
    if not allow_unrecorded:
        assert not unowned, f"files that belong to no row: {unowned[:3]}"
    return recorded


def whole_files(root: Path) -> list[Path]:
    """The files under *root* that are not part files."""
    return [p for p in root.rglob("*") if p.is_file() and not p.name.endswith(".part")]


# ------------------------------------------------------------------ processes


def tagged(tag: str) -> list[psutil.Process]:
    """Live (not zombie) processes whose environment carries *tag*."""
    found = []
    me = os.getpid()
    for process in psutil.process_iter():
        if process.pid == me:
            continue
        try:
            if process.environ().get(TAG) == tag and process.status() != psutil.STATUS_ZOMBIE:
                found.append(process)
        except psutil.Error:
            continue
    return found


def _running(process: psutil.Process) -> bool:
    """Still there, and the same process (not a reused pid), and not a zombie."""
    try:
        return bool(process.is_running() and process.status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


def _describe(process: psutil.Process) -> str:
    try:
        return f"{process.pid} ({' '.join(process.cmdline())[:120]})"
    except psutil.Error:
        return str(process.pid)


def orphans(tags: Iterable[str] = (), processes: Iterable[psutil.Process] = ()) -> list[str]:
    """The processes of *processes*, and those tagged with one of *tags*, still running."""
    left = [p for p in processes if _running(p)]
    left += [p for tag in tags for p in tagged(tag)]
    return sorted({_describe(p) for p in left})


def assert_no_orphans(
    *, tags: Iterable[str] = (), processes: Iterable[psutil.Process] = (), timeout: float = 15.0
) -> None:
    """Assert that no process of a finished or killed run survives it (polled until *timeout*)."""
    tags, processes = list(tags), list(processes)
    deadline = time.monotonic() + timeout
    while left := orphans(tags, processes):
        assert time.monotonic() < deadline, f"processes outlived their run: {left}"
        time.sleep(0.02)


# ------------------------------------------------------------------ secrets


def catalogue_text(db: Path) -> str:
    """Everything in the catalogue, as text: every row of every table, and the raw bytes.

    The raw bytes (with the WAL and journal, if any) include what deleted rows
    and free pages still hold; the rows include values SQLite split over
    overflow pages.
    """
    chunks = []
    for suffix in ("", "-wal", "-journal"):
        path = db.with_name(db.name + suffix)
        if path.exists():
            chunks.append(path.read_bytes().decode("latin-1"))
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        tables = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
        for (table,) in tables:
            chunks += [repr(row) for row in conn.execute(f'SELECT * FROM "{table}"')]
    finally:
        conn.close()
    return "\n".join(chunks)


def assert_no_secret(text: str, secrets: Iterable[str], *, signatures: bool = False) -> None:
    """No secret, nor anything shaped like a bearer token (nor, if *signatures*, a URL signature)."""
    for secret in secrets:
        assert secret not in text, "a secret leaked"
    assert not TOKEN_SHAPE.search(text), TOKEN_SHAPE.search(text)
    if signatures:
        assert not SIGNATURE.search(text), "a URL signature leaked"
