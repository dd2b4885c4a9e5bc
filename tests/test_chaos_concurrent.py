"""Chaos: two processes downloading one library into one catalogue and folder at once."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import invariants
import pytest
from conftest import Child

from veo3dl import FlowClient, ImageService, ImageStore
from veo3dl.testing import FlowEmulator

pytestmark = [pytest.mark.timeout(180), pytest.mark.usefixtures("no_leftover_processes")]

SCRIPT = """
import logging, sys
from veo3dl import Credentials, FlowClient, ImageService, ImageStore
logging.basicConfig(level=logging.DEBUG, stream=sys.stderr, format="%(name)s %(message)s")
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
        results, outputs = [], []
        with contextlib.ExitStack() as stack:
            procs = [
                stack.enter_context(
                    Child([sys.executable, "-c", SCRIPT, *args], tmp_path / "logs", name="run")
                )
                for _ in range(runs)
            ]
            for proc in procs:
                assert proc.wait(150) == 0, proc.stderr[-3000:]
                assert "locked" not in proc.stderr
                results.append([int(x) for x in proc.stdout.split()])
                outputs += [proc.stdout, proc.stderr]
            invariants.assert_no_orphans(tags=[proc.tag for proc in procs])
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
        everything = "\n".join([*outputs, invariants.catalogue_text(tmp_path / "c.db")])
        invariants.assert_no_secret(everything, flow.credentials.secrets())
