"""Chaos: workers and parents killed at random; the mirror completes and is never wrong.

CI runs a bounded version; ``pytest --long`` multiplies the seeds and kills by ten.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import invariants
import psutil
import pytest
from conftest import wait_until_gone

from veo3dl import DownloadPool, FlowClient, ImageService, ImageStore, RetryPolicy
from veo3dl.testing import FlowEmulator

pytestmark = [pytest.mark.timeout(300), pytest.mark.usefixtures("no_leftover_processes")]
FAST = RetryPolicy(attempts=4, backoff=0.01, backoff_max=0.05)


def small_library(seed: int, items: int, latency: float = 0.01) -> FlowEmulator:
    return FlowEmulator(
        items=items,
        videos=items // 25,
        seed=seed,
        latency=latency,
        image_bytes=(3_000, 12_000),
        video_bytes=(40_000, 90_000),
    )


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_random_kills_of_busy_workers(seed: int, tmp_path: Path, chaos_scale: int) -> None:
    rng = random.Random(seed)
    target = 12 * chaos_scale
    with (
        small_library(seed, 500) as flow,
        DownloadPool(3, slots_per_worker=4, max_attempts=1000) as pool,
    ):
        client = FlowClient(
            flow.credentials, labs_url=flow.labs_url, api_url=flow.api_url, retry=FAST
        )
        store = ImageStore(tmp_path / "c.db")
        service = ImageService(client, store, pool=pool, storage_root=tmp_path / "media")
        service.sync_metadata("p")
        kills: list[int] = []
        stop = threading.Event()

        def killer() -> None:
            while not stop.is_set() and len(kills) < target:
                pids = pool.worker_pids()
                if pool.status().busy and pids:
                    victim = rng.choice(pids)
                    try:
                        os.kill(victim, signal.SIGKILL)
                        kills.append(victim)
                    except ProcessLookupError:
                        pass
                stop.wait(rng.uniform(0.01, 0.08))

        thread = threading.Thread(target=killer)
        thread.start()
        try:
            report = service.download_images("p")
        finally:
            stop.set()
            thread.join(30)
        store.close()
        assert report.ok, report.failures[:3]
        assert report.downloaded == 500
        assert len(kills) >= min(target, 3), "the download ended before the kills could land"
        assert pool.status().restarts >= len(set(kills)) - 1
        assert wait_until_gone(kills) == []
        recorded = invariants.check(tmp_path / "c.db", tmp_path / "media")
        assert len(recorded) == 500
        for item in rng.sample(flow.items, 25):
            assert recorded[item.name].read_bytes() == flow.content(item.name)


RUN_SCRIPT = """
import sys
from veo3dl import Credentials, FlowClient, ImageService, ImageStore, RetryPolicy
labs, api, cookie, key, root = sys.argv[1:6]
client = FlowClient(Credentials(cookie=cookie, api_key=key), labs_url=labs, api_url=api,
                    retry=RetryPolicy(attempts=4, backoff=0.01))
store = ImageStore(root + "/c.db")
service = ImageService(client, store, storage_root=root + "/media", workers=2, slots_per_worker=3)
service.sync_metadata("p")
report = service.download_images("p", retry_failed=True)
print("done", report.downloaded, report.adopted, report.skipped, report.failed, flush=True)
"""
IN_FLIGHT = 2 * 3


def start_run(flow: FlowEmulator, root: Path) -> subprocess.Popen[str]:
    creds = flow.credentials
    args = [flow.labs_url, flow.api_url, creds.cookie or "", creds.api_key or "", str(root)]
    return subprocess.Popen(
        [sys.executable, "-c", RUN_SCRIPT, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def fetches(flow: FlowEmulator, name: str) -> int:
    return flow.requests("media", name=name) + flow.requests("fife", name=name)


def test_parent_killed_at_random_points_then_rerun(tmp_path: Path, chaos_scale: int) -> None:
    rng = random.Random(7)
    points = 20 * chaos_scale
    root = tmp_path
    with small_library(3, 150, latency=0.03) as flow:
        done_before: dict[str, int] = {}  # item -> fetches when first seen done
        kills = 0
        for _ in range(points):
            run = start_run(flow, root)
            time.sleep(rng.uniform(0.3, 1.6))  # the kill point: anywhere in sync or download
            descendants = [p.pid for p in psutil.Process(run.pid).children(recursive=True)]
            if run.poll() is not None:  # it finished before the kill: start a fresh chain
                run.communicate(timeout=30)
                continue
            run.send_signal(signal.SIGKILL)
            run.communicate(timeout=30)
            kills += 1
            assert wait_until_gone(descendants, timeout=10) == [], (
                "a worker outlived its killed parent"
            )
            if (root / "c.db").exists():
                recorded = invariants.check(
                    root / "c.db", root / "media", completed=False, allow_unrecorded=True
                )
                for name in recorded:
                    done_before.setdefault(name, fetches(flow, name))
        final = start_run(flow, root)
        out, err = final.communicate(timeout=120)
        assert final.returncode == 0, err[-3000:]
        assert out.startswith("done")
        recorded = invariants.check(root / "c.db", root / "media")
        assert len(recorded) == 150
        refetched = [name for name, seen in done_before.items() if fetches(flow, name) != seen]
        assert not refetched, f"recorded items fetched again: {refetched[:5]}"
        extra = sum(max(fetches(flow, item.name) - 1, 0) for item in flow.items)
        assert extra <= kills * IN_FLIGHT, f"{extra} extra fetches for {kills} kills"
        assert kills >= points // 2
