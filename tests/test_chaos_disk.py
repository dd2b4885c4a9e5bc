"""Chaos: a full disk and a read-only destination, on a real (tmpfs) file system.

The download runs as the ``veo3dl`` command inside a user and mount namespace
(``unshare -Urm``) whose storage root is a small tmpfs — full after a few
files, or mounted read-only.  The catalogue stays outside, as does the
emulator.  Skipped where unprivileged namespaces are not allowed.
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import attrs
import invariants
import pytest
from conftest import Child

from veo3dl import FlowClient, ImageService, ImageStore
from veo3dl.testing import FlowEmulator

pytestmark = [pytest.mark.timeout(180), pytest.mark.usefixtures("no_leftover_processes")]


def _namespaces_work() -> bool:
    if shutil.which("unshare") is None:
        return False
    try:
        probe = subprocess.run(["unshare", "-Urm", "true"], capture_output=True, timeout=30)
    except subprocess.TimeoutExpired:  # run() has killed it: "true" starts nothing
        return False
    return probe.returncode == 0


needs_namespaces = pytest.mark.skipif(
    not _namespaces_work(), reason="unprivileged user namespaces unavailable"
)


@attrs.frozen
class Outcome:
    """What `veo3dl download` did on the tmpfs."""

    code: int
    stdout: str
    stderr: str
    files: dict[str, int]  # what was left on the tmpfs: path -> size


def download_on_tmpfs(
    flow: FlowEmulator, db: Path, root: Path, *, size_kb: int, read_only: bool
) -> Outcome:
    """Run `veo3dl download` with *root* a tmpfs (the command logs at debug level)."""
    root.mkdir(parents=True, exist_ok=True)
    remount = f"mount -o remount,ro {root} && " if read_only else ""
    script = (
        f"mount -t tmpfs -o size={size_kb}k tmpfs {root} && {remount}"
        f"{sys.executable} -m veo3dl --quiet download --db {db} --profile p --dest {root} --workers 1 --slots 2; "
        f"echo EXIT=$?; find {root} -type f -printf 'FILE %P %s\\n'"
    )
    creds = flow.credentials
    env = {
        "PATH": "/usr/bin:/bin",
        "VEO3DL_LABS_URL": flow.labs_url,
        "VEO3DL_API_URL": flow.api_url,
        "VEO3DL_COOKIE": creds.cookie or "",
        "VEO3DL_API_KEY": creds.api_key or "",
        "VEO3DL_LOG_LEVEL": "debug",
        "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
    }
    with Child(["unshare", "-Urm", "sh", "-c", script], db.parent / "logs", env=env) as run:
        assert run.wait(150) == 0, run.stderr[-3000:]
        invariants.assert_no_orphans(tags=[run.tag])
        out, err = run.stdout, run.stderr
    code = int(next(line for line in out.splitlines() if line.startswith("EXIT="))[5:])
    files = {}
    for line in out.splitlines():
        if line.startswith("FILE "):
            path, size = line[5:].rsplit(" ", 1)
            files[path] = int(size)
    return Outcome(code, out, err, files)


def assert_nothing_leaked(flow: FlowEmulator, outcome: Outcome, db: Path) -> None:
    everything = "\n".join([outcome.stdout, outcome.stderr, invariants.catalogue_text(db)])
    invariants.assert_no_secret(everything, flow.credentials.secrets())


def synced(flow: FlowEmulator, db: Path) -> None:
    client = FlowClient(flow.credentials, labs_url=flow.labs_url, api_url=flow.api_url)
    with ImageStore(db) as store:
        ImageService(client, store).sync_metadata("p")
    client.close()


def recorded(db: Path) -> dict[str, tuple[str, int]]:
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute(
            "SELECT name, local_path, size_bytes FROM veo3_image_generations WHERE local_path IS NOT NULL"
        ).fetchall()
    finally:
        conn.close()
    return {name: (path, size) for name, path, size in rows}


@needs_namespaces
def test_disk_full_fails_items_clearly_and_leaves_nothing_partial(
    tmp_path: Path, chaos_scale: int
) -> None:
    items = 10 * chaos_scale
    with FlowEmulator(items=items, videos=0, image_bytes=(60_000, 80_000)) as flow:
        db = tmp_path / "c.db"
        synced(flow, db)
        outcome = download_on_tmpfs(flow, db, tmp_path / "media", size_kb=300, read_only=False)
        assert_nothing_leaked(flow, outcome, db)
    rows, err = recorded(db), outcome.stderr
    assert outcome.code == 1, err
    assert "StorageError" in err and "disk full" in err and "Traceback" not in err
    assert 1 <= len(rows) < items
    assert not [f for f in outcome.files if f.endswith(".part") or "/." in f]  # nothing partial
    assert dict(rows.values()) == outcome.files  # every recorded file whole, nothing else


@needs_namespaces
def test_read_only_destination_is_a_clear_error(tmp_path: Path, chaos_scale: int) -> None:
    items = 4 * chaos_scale
    with FlowEmulator(items=items, videos=0) as flow:
        db = tmp_path / "c.db"
        synced(flow, db)
        outcome = download_on_tmpfs(flow, db, tmp_path / "media", size_kb=1024, read_only=True)
        assert_nothing_leaked(flow, outcome, db)
    err = outcome.stderr
    assert outcome.code == 1, err
    assert err.count("FAILED") == items and "read-only" in err and "Traceback" not in err
    assert outcome.files == {} and recorded(db) == {}
