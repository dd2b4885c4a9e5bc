"""Chaos: workers and parents killed at exact points; the mirror completes and is never wrong.

Every kill is triggered by the emulator's request count (:meth:`FlowEmulator.hold`
stops the chosen request until the kill is done), so each lands where it was
aimed: a worker while the n-th media request is in flight, the parent while
it waits for listing page k (sync) or while media request n is in flight
(download).  CI runs a bounded version; ``pytest --long`` multiplies the
worker kills and the seeds of the parent kills (so the kill points) by ten.
"""

from __future__ import annotations

import os
import random
import signal
import sys
import threading
import time
from pathlib import Path

import attrs
import invariants
import psutil
import pytest
from conftest import Child, poll

from veo3dl import DownloadPool, FlowClient, ImageService, ImageStore, RetryPolicy
from veo3dl.testing import FlowEmulator

pytestmark = [pytest.mark.timeout(300), pytest.mark.usefixtures("no_leftover_processes")]
FAST = RetryPolicy(attempts=4, backoff=0.01, backoff_max=0.05)
ARRIVAL_TIMEOUT = 60.0


def small_library(seed: int, items: int, *, page_cap: int = 18) -> FlowEmulator:
    return FlowEmulator(
        items=items,
        videos=items // 25,
        seed=seed,
        page_cap=page_cap,
        image_bytes=(2_000, 8_000),
        video_bytes=(20_000, 40_000),
    )


def fetches(flow: FlowEmulator, name: str) -> int:
    return flow.requests("media", name=name) + flow.requests("fife", name=name)


def test_a_hold_stops_exactly_the_nth_request() -> None:
    with small_library(1, 30, page_cap=5) as flow:
        client = FlowClient(
            flow.credentials, labs_url=flow.labs_url, api_url=flow.api_url, retry=FAST
        )
        page = flow.hold("listing", nth=3)
        listed: list[int] = []
        lister = threading.Thread(target=lambda: listed.append(len(list(client.iter_items()))))
        lister.start()
        try:
            assert page.wait(ARRIVAL_TIMEOUT)
            assert flow.requests("listing") == 3 and page.held == 1 and not listed
        finally:
            page.release()
            lister.join(30)
        assert listed == [30] and flow.requests("listing") == 6 and page.held == 1
        every = flow.hold("media", nth=2, times=None, timeout=0.05)
        for item in flow.items[:3]:
            client.fetch_media(item.name)
        assert every.held == 2 and not every.released
        every.release()
        last = flow.hold("media")
        outcome: list[str] = []

        def fetch() -> None:
            try:
                client.fetch_media(flow.items[0].name)
                outcome.append("answered")
            except Exception as error:
                outcome.append(type(error).__name__)

        fetcher = threading.Thread(target=fetch)
        fetcher.start()
        assert last.wait(ARRIVAL_TIMEOUT)
    fetcher.join(30)  # stopping the emulator let the held request go
    assert last.released and outcome and not fetcher.is_alive()
    client.close()


# ------------------------------------------------------------------ workers


def fresh_workers(pool: DownloadPool, killed: list[psutil.Process]) -> list[psutil.Process]:
    """The pool's workers not killed yet (a replacement may still be starting)."""
    found = []
    for pid in pool.worker_pids():
        try:
            process = psutil.Process(pid)
        except psutil.NoSuchProcess:
            continue
        if process not in killed:
            found.append(process)
    return found


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_kills_of_busy_workers_at_exact_points(
    seed: int, tmp_path: Path, chaos_scale: int, captured_logs: list[str]
) -> None:
    rng = random.Random(seed)
    items = 400
    target = 12 * chaos_scale
    with (
        small_library(seed, items) as flow,
        DownloadPool(3, slots_per_worker=4, max_attempts=1000) as pool,
    ):
        client = FlowClient(
            flow.credentials, labs_url=flow.labs_url, api_url=flow.api_url, retry=FAST
        )
        store = ImageStore(tmp_path / "c.db")
        service = ImageService(client, store, pool=pool, storage_root=tmp_path / "media")
        service.sync_metadata("p")
        # Each item takes at least one media request: every point is reached.
        points = sorted(rng.sample(range(1, items - 10), target))
        holds = [flow.hold("media", nth=n) for n in points]
        kills: list[psutil.Process] = []
        seen: dict[int, psutil.Process] = {}

        def killer() -> None:
            for hold in holds:
                if not hold.wait(ARRIVAL_TIMEOUT):
                    return
                live = poll(lambda: fresh_workers(pool, kills), what="a live worker")
                seen.update((p.pid, p) for p in live)
                victim = rng.choice(live)  # all are busy: the queue holds hundreds of jobs
                victim.kill()
                kills.append(victim)
                hold.release()

        thread = threading.Thread(target=killer)
        thread.start()
        try:
            report = service.download_images("p")
        finally:
            for hold in holds:
                hold.release()
            thread.join(30)
        store.close()
        assert len(kills) == target, f"{len(kills)} of {target} kills landed"
        assert report.ok, report.failures[:3]
        assert report.downloaded == items
        assert pool.status().restarts >= target
        invariants.assert_no_orphans(processes=kills)
        seen.update((p.pid, p) for p in fresh_workers(pool, []))
        secrets = flow.credentials.secrets()
    invariants.assert_no_orphans(processes=seen.values())
    recorded = invariants.check(tmp_path / "c.db", tmp_path / "media")
    assert len(recorded) == items
    for item in rng.sample(flow.items, 25):
        assert recorded[item.name].read_bytes() == flow.content(item.name)
    everything = [*captured_logs, repr(report), invariants.catalogue_text(tmp_path / "c.db")]
    invariants.assert_no_secret("\n".join(everything), secrets)


# ------------------------------------------------------------------ parents

RUN_SCRIPT = """
import logging, sys
from veo3dl import Credentials, FlowClient, ImageService, ImageStore, RetryPolicy
logging.basicConfig(level=logging.DEBUG, stream=sys.stderr, format="%(name)s %(message)s")
labs, api, cookie, key, root = sys.argv[1:6]
client = FlowClient(Credentials(cookie=cookie, api_key=key), labs_url=labs, api_url=api,
                    retry=RetryPolicy(attempts=4, backoff=0.01))
store = ImageStore(root + "/c.db")
service = ImageService(client, store, storage_root=root + "/media", workers=2, slots_per_worker=2)
sync = service.sync_metadata("p")
report = service.download_images("p", retry_failed=True)
print("done", sync.seen, report.downloaded, report.adopted, report.failed, flush=True)
"""
IN_FLIGHT = 2 * 2
MAX_MEDIA_POINT = 4  # a download kill lands at media request 1..4 of its run


def start_run(flow: FlowEmulator, root: Path) -> Child:
    creds = flow.credentials
    args = [flow.labs_url, flow.api_url, creds.cookie or "", creds.api_key or "", str(root)]
    return Child([sys.executable, "-c", RUN_SCRIPT, *args], root / "logs", name="run")


@attrs.define
class Point:
    """One kill: the parent dies while request *nth* to *endpoint* of its run waits."""

    phase: str  # "sync" | "download"
    endpoint: str
    nth: int


def run_and_kill(flow: FlowEmulator, root: Path, point: Point) -> list[str]:
    """Start a run; SIGKILL its parent when request *point.nth* to *point.endpoint* waits.

    Returns the run's output.  Asserts the kill landed (the run was still
    going, the request arrived) and that none of its processes outlived it.
    """
    hold = flow.hold(point.endpoint, nth=point.nth, times=None)  # counted from before the start
    try:
        with start_run(flow, root) as run:
            deadline = time.monotonic() + ARRIVAL_TIMEOUT
            while not hold.wait(0.05):
                assert run.proc.poll() is None, (
                    f"{point} did not land: the run exited {run.proc.returncode}: "
                    f"{run.stderr[-3000:]}"
                )
                assert time.monotonic() < deadline, f"{point} did not land in {ARRIVAL_TIMEOUT} s"
            tree = run.descendants()
            os.kill(run.pid, signal.SIGKILL)
            assert run.wait(30) == -signal.SIGKILL, f"{point}: the run ended before the kill"
            invariants.assert_no_orphans(tags=[run.tag], processes=tree, timeout=15)
            return [run.stdout, run.stderr]
    finally:
        hold.release()


SYNC_POINTS, DOWNLOAD_POINTS = 8, 12  # per run of the test: 20 kills, every one landing


def plan(rng: random.Random, pages: int) -> list[Point]:
    sync = [Point("sync", "listing", rng.randint(1, pages)) for _ in range(SYNC_POINTS)]
    download = [Point("download", "media", 0) for _ in range(DOWNLOAD_POINTS)]
    points = sync + download
    rng.shuffle(points)
    return points


def media_keys_on_disk(flow: FlowEmulator, root: Path) -> set[str]:
    """Items with a whole file under *root*, recorded or not (by the default template)."""
    by_key = {item.media_key: item.name for item in flow.items}
    return {by_key[path.name.split(".")[0]] for path in invariants.whole_files(root)}


def test_parent_killed_at_exact_points_then_rerun(tmp_path: Path, chaos_seed: int) -> None:
    """20 kills (8 in sync, 12 in download), then a rerun; ``--long`` runs ten seeds."""
    rng = random.Random(7 + chaos_seed)
    # Each download kill lets at most MAX_MEDIA_POINT - 1 items finish: enough stay for the rest.
    items = (MAX_MEDIA_POINT - 1) * DOWNLOAD_POINTS + 2 * MAX_MEDIA_POINT + 8
    page_cap = 5
    pages = -(-items // page_cap)
    root = tmp_path
    landed = {"sync": 0, "download": 0}
    fetched_when_done: dict[str, int] = {}  # item -> its fetches when first seen on disk
    outputs: list[str] = []
    with small_library(3 + chaos_seed, items, page_cap=page_cap) as flow:
        secrets = flow.credentials.secrets()
        for point in plan(rng, pages):
            if point.phase == "download":
                left = items - len(invariants.whole_files(root / "media"))
                point.nth = rng.randint(1, min(MAX_MEDIA_POINT, left))
            outputs += run_and_kill(flow, root, point)
            landed[point.phase] += 1
            if (root / "c.db").exists():
                invariants.check(
                    root / "c.db", root / "media", completed=False, allow_unrecorded=True
                )
            if (root / "media").exists():
                for name in media_keys_on_disk(flow, root / "media"):
                    fetched_when_done.setdefault(name, fetches(flow, name))
        with start_run(flow, root) as final:
            assert final.wait(180) == 0, final.stderr[-3000:]
            outputs += [final.stdout, final.stderr]
            assert final.stdout.startswith(f"done {items} "), final.stdout
            invariants.assert_no_orphans(tags=[final.tag])
        recorded = invariants.check(root / "c.db", root / "media")
        assert len(recorded) == items
        for name, path in recorded.items():
            assert path.read_bytes() == flow.content(name)
        again = [name for name, seen in fetched_when_done.items() if fetches(flow, name) != seen]
        assert not again, f"items already on disk fetched again: {again[:5]}"
        extra = sum(max(fetches(flow, item.name) - 1, 0) for item in flow.items)
        assert extra <= landed["download"] * IN_FLIGHT, f"{extra} extra fetches"
        invariants.assert_no_secret(
            "\n".join([*outputs, invariants.catalogue_text(root / "c.db")]), secrets
        )
    assert landed == {"sync": SYNC_POINTS, "download": DOWNLOAD_POINTS}, landed
    print(f"kill points landed: {landed}, items {items}, extra fetches {extra}")
