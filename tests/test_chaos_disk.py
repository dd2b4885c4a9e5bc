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

import pytest

from veo3dl import FlowClient, ImageService, ImageStore
from veo3dl.testing import FlowEmulator

pytestmark = [pytest.mark.timeout(180), pytest.mark.usefixtures("no_leftover_processes")]


def _namespaces_work() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-Urm", "true"], capture_output=True, timeout=30)
    return probe.returncode == 0


needs_namespaces = pytest.mark.skipif(
    not _namespaces_work(), reason="unprivileged user namespaces unavailable"
)


def download_on_tmpfs(
    flow: FlowEmulator, db: Path, root: Path, *, size_kb: int, read_only: bool
) -> tuple[int, str, dict[str, int]]:
    """Run `veo3dl download` with *root* a tmpfs; return exit code, stderr and the files left there."""
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
        "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
    }
    result = subprocess.run(
        ["unshare", "-Urm", "sh", "-c", script],
        capture_output=True,
        text=True,
        env=env,
        timeout=150,
    )
    code = int(next(line for line in result.stdout.splitlines() if line.startswith("EXIT="))[5:])
    files = {}
    for line in result.stdout.splitlines():
        if line.startswith("FILE "):
            path, size = line[5:].rsplit(" ", 1)
            files[path] = int(size)
    return code, result.stderr, files


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
def test_disk_full_fails_items_clearly_and_leaves_nothing_partial(tmp_path: Path) -> None:
    with FlowEmulator(items=10, videos=0, image_bytes=(60_000, 80_000)) as flow:
        db = tmp_path / "c.db"
        synced(flow, db)
        code, err, files = download_on_tmpfs(
            flow, db, tmp_path / "media", size_kb=300, read_only=False
        )
    rows = recorded(db)
    assert code == 1, err
    assert "StorageError" in err and "disk full" in err and "Traceback" not in err
    assert 1 <= len(rows) < 10
    assert not [f for f in files if f.endswith(".part") or "/." in f]  # nothing partial left
    assert dict(rows.values()) == files  # every recorded file whole, nothing else


@needs_namespaces
def test_read_only_destination_is_a_clear_error(tmp_path: Path) -> None:
    with FlowEmulator(items=4, videos=0) as flow:
        db = tmp_path / "c.db"
        synced(flow, db)
        code, err, files = download_on_tmpfs(
            flow, db, tmp_path / "media", size_kb=1024, read_only=True
        )
    assert code == 1, err
    assert err.count("FAILED") == 4 and "read-only" in err and "Traceback" not in err
    assert files == {} and recorded(db) == {}
