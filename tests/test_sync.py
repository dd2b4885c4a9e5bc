"""sync_metadata against the emulator: every item once, nothing lost, across processes."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from veo3dl import (
    ApiError,
    FlowClient,
    ImageService,
    ImageStore,
    ListingStop,
    RetryPolicy,
    TransportError,
)
from veo3dl._records import DownloadRecord
from veo3dl.testing import Fault, FlowEmulator

pytestmark = pytest.mark.timeout(90)
FAST = RetryPolicy(attempts=3, backoff=0.01, backoff_max=0.02)


@pytest.fixture
def flow() -> Iterator[FlowEmulator]:
    with FlowEmulator() as emulator:
        yield emulator
        assert emulator.errors == []
        assert emulator.deviations == []  # veo3dl sends what the web app sends


def service_for(flow: FlowEmulator, db: Path, **kwargs) -> ImageService:
    client = FlowClient(
        flow.credentials, labs_url=flow.labs_url, api_url=flow.api_url, retry=FAST, **kwargs
    )
    return ImageService(client, ImageStore(db), storage_root=db.parent / "media")


def test_sync_stores_all_42_exactly_once(flow: FlowEmulator, tmp_path: Path) -> None:
    service = service_for(flow, tmp_path / "c.db")
    progress = []
    report = service.sync_metadata("default", on_page=progress.append)
    assert (report.pages, report.seen, report.inserted, report.updated) == (3, 42, 42, 0)
    assert report.complete and report.stop is ListingStop.END and not report.loop_guard
    assert report.marked_missing == 0
    assert [p.seen for p in progress] == [18, 36, 42]
    assert progress[-1].stored == 42 and progress[-1].inserted == 42
    rows = service.store.items("default")
    assert len(rows) == 42 and len({r.name for r in rows}) == 42
    assert {r.name for r in rows} == {i.name for i in flow.items}
    by_name = {r.name: r for r in rows}
    for expected in flow.items:
        row = by_name[expected.name]
        assert row.media_key == expected.media_key and row.created_at == expected.create_time
        assert row.media_type == expected.media_type


def test_resync_keeps_rows_and_every_local_path(flow: FlowEmulator, tmp_path: Path) -> None:
    service = service_for(flow, tmp_path / "c.db")
    service.sync_metadata("default")
    names = [i.name for i in flow.items[:10]]
    service.store.record_downloads(
        "default",
        [
            DownloadRecord(name=n, ok=True, local_path=f"d/{n}.png", size_bytes=5, sha256="f" * 64)
            for n in names
        ],
    )
    report = service.sync_metadata("default")
    assert (report.inserted, report.updated) == (0, 42)
    rows = service.store.items("default")
    assert len(rows) == 42
    assert {r.name: r.local_path for r in rows if r.local_path} == {n: f"d/{n}.png" for n in names}
    assert all(r.sha256 == "f" * 64 for r in rows if r.local_path)


def test_vanished_item_is_marked_missing_and_new_one_inserted(
    flow: FlowEmulator, tmp_path: Path
) -> None:
    service = service_for(flow, tmp_path / "c.db")
    service.sync_metadata("default")
    gone = flow.items[7].name
    service.store.record_downloads(
        "default", [DownloadRecord(name=gone, ok=True, local_path="d/x.png", size_bytes=1)]
    )
    flow.remove_items([gone])
    [new] = flow.add_items(1)
    report = service.sync_metadata("default")
    assert (report.inserted, report.marked_missing) == (1, 1)
    assert service.store.get("default", gone).remote_state == "missing"
    assert service.store.get("default", gone).local_path == "d/x.png"  # row and path kept
    assert service.store.get("default", new.name).remote_state == "present"
    assert len(service.store.items("default")) == 43


def test_profiles_are_separate(flow: FlowEmulator, tmp_path: Path) -> None:
    service = service_for(flow, tmp_path / "c.db")
    service.sync_metadata("alice")
    service.sync_metadata("bob")
    assert len(service.store.items("alice")) == len(service.store.items("bob")) == 42


def test_loop_guard_is_reported(flow: FlowEmulator, tmp_path: Path) -> None:
    flow.inject(Fault.loop_token(), endpoint="listing", times=None)
    report = service_for(flow, tmp_path / "c.db").sync_metadata("default")
    assert report.loop_guard
    assert report.seen == len(
        {r.name for r in service_for(flow, tmp_path / "c.db").store.items("default")}
    )


@pytest.mark.parametrize(
    ("fault", "stop"),
    [
        (Fault.loop_token(), ListingStop.REPEATED_TOKEN),
        (Fault.repeat_items(count=18), ListingStop.ALL_SEEN),
    ],
    ids=["repeated-token", "all-seen"],
)
def test_a_loop_guard_stop_never_marks_anything_missing(
    flow: FlowEmulator, tmp_path: Path, fault: Fault, stop: ListingStop
) -> None:
    """The items past a loop were never listed: they must not be called gone."""
    service = service_for(flow, tmp_path / "c.db")
    service.sync_metadata("default")
    flow.inject(fault, endpoint="listing", times=1)
    report = service.sync_metadata("default")
    assert report.stop is stop and report.loop_guard
    assert not report.complete and report.seen < 42
    assert report.marked_missing == 0
    assert service.store.counts("default").missing == 0
    assert service.sync_metadata("default").complete  # the next sync goes all the way


def test_page_limit_never_marks_missing(flow: FlowEmulator, tmp_path: Path) -> None:
    service = service_for(flow, tmp_path / "c.db")
    service.sync_metadata("default")
    partial = service_for(flow, tmp_path / "c.db", max_pages=1)
    report = partial.sync_metadata("default")
    assert report.stop is ListingStop.PAGE_LIMIT and not report.complete
    assert report.marked_missing == 0
    assert service.store.counts("default").missing == 0


def test_sync_cut_off_midway_is_consistent_and_the_next_completes(
    flow: FlowEmulator, tmp_path: Path
) -> None:
    service = service_for(flow, tmp_path / "c.db")
    service.sync_metadata("default")  # 42 stored
    flow.remove_items([flow.items[-1].name])
    faults = []

    def break_the_listing(progress) -> None:
        if progress.page == 1:  # page 1 is stored: now the service fails for good
            faults.append(flow.inject(Fault.status(500), endpoint="listing", times=None))

    with pytest.raises(ApiError):
        service.sync_metadata("default", on_page=break_the_listing)
    assert len(service.store.items("default")) == 42
    assert service.store.counts("default").missing == 0  # an interrupted sync marks nothing
    faults[0].remove()
    report = service.sync_metadata("default")
    assert report.complete and report.marked_missing == 1
    assert len(service.store.items("default")) == 42


def test_incremental_sync_learns_new_items_cheaply(tmp_path: Path) -> None:
    with FlowEmulator(items=200, videos=10) as flow:
        service = service_for(flow, tmp_path / "c.db")
        service.sync_metadata("default")
        flow.remove_items([flow.items[-1].name])
        new = flow.add_items(3)
        flow.reset_counters()
        report = service.sync_metadata("default", incremental=True)
        assert report.caught_up and report.inserted == 3
        assert report.marked_missing == 0
        assert (
            flow.requests("listing") == 2
        )  # page 1: 3 new; page 2: all known -> stop (of 12 pages)
        assert {i.name for i in new} <= {r.name for r in service.store.items("default")}
        assert service.store.counts("default").missing == 0


def test_transport_failure_midway_keeps_finished_pages(tmp_path: Path) -> None:
    with FlowEmulator() as flow:
        service = service_for(flow, tmp_path / "c.db")
        flow.inject(Fault.reset(), endpoint="listing", times=None)
        with pytest.raises(TransportError):
            service.sync_metadata("default")
        assert service.store.items("default") == []


SYNC_SCRIPT = """
import sys
from veo3dl import Credentials, FlowClient, ImageService, ImageStore
labs, api, cookie, key, db, profile = sys.argv[1:7]
client = FlowClient(Credentials(cookie=cookie, api_key=key), labs_url=labs, api_url=api)
service = ImageService(client, ImageStore(db, timeout=60))
report = service.sync_metadata(profile)
print(report.seen, report.inserted, report.updated, flush=True)
"""


def run_sync_process(
    flow: FlowEmulator, db: Path, profile: str = "default"
) -> subprocess.Popen[str]:
    creds = flow.credentials
    args = [flow.labs_url, flow.api_url, creds.cookie, creds.api_key, str(db), profile]
    return subprocess.Popen(
        [sys.executable, "-c", SYNC_SCRIPT, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.usefixtures("no_leftover_processes")
def test_two_processes_syncing_at_once(tmp_path: Path) -> None:
    with FlowEmulator(items=300, videos=20, latency=0.005) as flow:
        db = tmp_path / "c.db"
        procs = [run_sync_process(flow, db) for _ in range(2)]
        outputs = []
        try:
            for proc in procs:
                out, err = proc.communicate(timeout=60)
                assert proc.returncode == 0, err
                assert "locked" not in err
                outputs.append([int(x) for x in out.split()])
        finally:  # a failure above must not leave the other one running
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.communicate(timeout=10)
        with ImageStore(db) as store:
            rows = store.items("default")
    assert len(rows) == 300 and len({r.name for r in rows}) == 300
    assert all(seen == 300 for seen, _, _ in outputs)
    assert sum(inserted for _, inserted, _ in outputs) == 300


@pytest.mark.usefixtures("no_leftover_processes")
def test_killed_sync_leaves_a_consistent_database(tmp_path: Path) -> None:
    with FlowEmulator(items=120, videos=5, latency=0.3) as flow:
        db = tmp_path / "c.db"
        proc = run_sync_process(flow, db)
        deadline = time.monotonic() + 30
        while True:
            if db.exists():
                with ImageStore(db) as store:
                    if len(store.items("default")) >= 18:
                        break
            assert time.monotonic() < deadline, "the sync never stored a page"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=10)
        with ImageStore(db) as store:
            rows = store.items("default")
            assert len(rows) % 18 == 0 and len({r.name for r in rows}) == len(rows)
            assert store.counts("default").missing == 0
        rerun = run_sync_process(flow, db)
        _, err = rerun.communicate(timeout=60)
        assert rerun.returncode == 0, err
        with ImageStore(db) as store:
            assert len(store.items("default")) == 120
            assert store.counts("default").missing == 0
