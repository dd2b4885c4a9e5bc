"""Chaos: two processes downloading one library into one catalogue and folder at once."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import invariants
import pytest

from veo3dl import FlowClient, ImageService, ImageStore
from veo3dl.testing import FlowEmulator

pytestmark = [pytest.mark.timeout(180), pytest.mark.usefixtures("no_leftover_processes")]

SCRIPT = """
import sys
from veo3dl import Credentials, FlowClient, ImageService, ImageStore
labs, api, cookie, key, root = sys.argv[1:6]
client = FlowClient(Credentials(cookie=cookie, api_key=key), labs_url=labs, api_url=api)
store = ImageStore(root + "/c.db", timeout=60)
service = ImageService(client, store, storage_root=root + "/media", workers=1, slots_per_worker=4)
report = service.download_images("p")
print(report.downloaded, report.adopted, report.busy_elsewhere, report.failed, flush=True)
"""


@pytest.mark.parametrize("runs", [2, 3])
def test_concurrent_downloads_fetch_each_item_once(
    runs: int, tmp_path: Path, chaos_scale: int
) -> None:
    with FlowEmulator(
        items=120 * chaos_scale, videos=4, latency=0.01, image_bytes=(5_000, 20_000)
    ) as flow:
        client = FlowClient(flow.credentials, labs_url=flow.labs_url, api_url=flow.api_url)
        with ImageStore(tmp_path / "c.db") as store:
            ImageService(client, store).sync_metadata("p")
        creds = flow.credentials
        args = [flow.labs_url, flow.api_url, creds.cookie or "", creds.api_key or "", str(tmp_path)]
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", SCRIPT, *args],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(runs)
        ]
        results = []
        for proc in procs:
            out, err = proc.communicate(timeout=150)
            assert proc.returncode == 0, err[-3000:]
            assert "locked" not in err
            results.append([int(x) for x in out.split()])
        total = len(flow.items)
        assert sum(downloaded for downloaded, *_ in results) == total
        assert all(failed == 0 for *_, failed in results)
        for item in flow.items:
            assert (
                flow.requests("media", name=item.name) + flow.requests("fife", name=item.name) == 1
            ), item.name
        recorded = invariants.check(tmp_path / "c.db", tmp_path / "media")
        assert len(recorded) == total
        with ImageStore(tmp_path / "c.db") as store:
            assert all(row.local_path for row in store.items("p"))
            leftover = store.db.execute(
                "SELECT count(*) FROM veo3_image_generations WHERE claimed_by IS NOT NULL"
            )
            assert leftover.fetchone()[0] == 0  # every lease released
