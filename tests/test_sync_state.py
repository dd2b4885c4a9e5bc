"""Sync sequence numbers and state: overlapping syncs, and incremental syncs after a cut."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import attrs
import pytest

from veo3dl import (
    FlowClient,
    ImageService,
    ImageStore,
    ListingStop,
    MediaItem,
    MediaType,
    RetryPolicy,
)
from veo3dl._models import ListingPage
from veo3dl._sync import SyncProgress, run_sync
from veo3dl._sync_state import read_sync_state
from veo3dl.testing import FlowEmulator

pytestmark = pytest.mark.timeout(90)
FAST = RetryPolicy(attempts=3, backoff=0.01, backoff_max=0.02)


class Cut(Exception):
    """Stands for Ctrl-C, a network failure or a kill in the middle of a sync."""


def cut_at(page: int):
    def on_page(progress: SyncProgress) -> None:
        if progress.page == page:
            raise Cut

    return on_page


@pytest.fixture
def flow() -> Iterator[FlowEmulator]:
    with FlowEmulator() as emulator:  # 42 items, 18 a page: 3 pages
        yield emulator
        assert emulator.errors == []


def service_for(flow: FlowEmulator, db: Path, **kwargs) -> ImageService:
    client = FlowClient(
        flow.credentials, labs_url=flow.labs_url, api_url=flow.api_url, retry=FAST, **kwargs
    )
    return ImageService(client, ImageStore(db), storage_root=db.parent / "media")


# ------------------------------------------------------------ overlapping syncs


def test_an_overlapping_sync_cut_short_makes_nothing_missing(
    flow: FlowEmulator, tmp_path: Path
) -> None:
    """Sync A has listed everything; B (another connection) stores page 1 and is cut."""
    a = service_for(flow, tmp_path / "c.db")
    b = service_for(flow, tmp_path / "c.db")
    b_reports = []

    def a_page(progress: SyncProgress) -> None:
        if progress.page == 3:  # A's last page is stored; A marks missing next
            with pytest.raises(Cut):
                b.sync_metadata("default", on_page=cut_at(1))
            b_reports.append(read_sync_state(b.store, "default"))

    report = a.sync_metadata("default", on_page=a_page)
    assert report.complete and report.marked_missing == 0
    assert b_reports[0].last_seq == report.sync_seq + 1  # B ran, numbered after A
    assert a.store.counts("default").missing == 0
    assert a.store.counts("default").pending == 42


def test_an_item_only_a_later_sync_listed_stays_present(flow: FlowEmulator, tmp_path: Path) -> None:
    """A starts; a new item appears and B lists it (completely); A finishes after B."""
    a = service_for(flow, tmp_path / "c.db")
    b = service_for(flow, tmp_path / "c.db")
    new = []

    def a_page(progress: SyncProgress) -> None:
        if progress.page == 1:
            new.extend(flow.add_items(1))
            later = b.sync_metadata("default")
            # A's first page is not stored yet (pages go in batches): it lands after B's.
            assert later.complete and later.sync_seq == 2

    report = a.sync_metadata("default", on_page=a_page)
    assert report.sync_seq == 1 and report.complete and report.marked_missing == 0
    assert a.store.get("default", new[0].name).remote_state == "present"
    assert a.store.counts("default").missing == 0


def test_a_removed_item_is_still_marked_missing_by_an_overlapped_sync(
    flow: FlowEmulator, tmp_path: Path
) -> None:
    a = service_for(flow, tmp_path / "c.db")
    b = service_for(flow, tmp_path / "c.db")
    a.sync_metadata("default")
    gone = flow.items[-1].name  # the oldest: on A's last page, had it stayed

    def a_page(progress: SyncProgress) -> None:
        if progress.page == 1:
            flow.remove_items([gone])
            with pytest.raises(Cut):
                b.sync_metadata("default", on_page=cut_at(1))

    report = a.sync_metadata("default", on_page=a_page)
    assert report.complete and report.marked_missing == 1
    assert a.store.get("default", gone).remote_state == "missing"
    assert a.store.counts("default").missing == 1


def test_sequence_numbers_grow_per_profile(flow: FlowEmulator, tmp_path: Path) -> None:
    service = service_for(flow, tmp_path / "c.db")
    seqs = [service.sync_metadata(p).sync_seq for p in ("alice", "alice", "bob", "alice")]
    assert seqs == [1, 2, 1, 3]


# ------------------------------------------------------- incremental after a cut


def test_incremental_after_a_cut_full_sync_lists_everything(
    flow: FlowEmulator, tmp_path: Path
) -> None:
    service = service_for(flow, tmp_path / "c.db")
    service.sync_metadata("default")
    gone = flow.items[5].name
    flow.remove_items([gone])
    flow.add_items(20)  # more than a page of new items
    with pytest.raises(Cut):
        service.sync_metadata("default", on_page=cut_at(1))  # stores the newest 18 only
    assert service.store.counts("default").items == 42 + 18
    report = service.sync_metadata("default", incremental=True)
    assert report.fell_back_to_full and "cut short" in (report.fallback_reason or "")
    assert report.incremental and report.complete and not report.caught_up
    assert report.inserted == 2
    assert report.marked_missing == 0  # an incremental sync never marks anything missing
    assert service.store.get("default", gone).remote_state == "present"
    assert {i.name for i in flow.items} <= {r.name for r in service.store.items("default")}
    # The catalogue is whole again: the next incremental sync is cheap.
    flow.reset_counters()
    again = service.sync_metadata("default", incremental=True)
    assert again.caught_up and not again.fell_back_to_full and flow.requests("listing") == 1


def test_the_reviewers_case_cut_after_page_2(tmp_path: Path) -> None:
    with FlowEmulator(items=42, videos=0, page_cap=10) as flow:
        service = service_for(flow, tmp_path / "c.db")
        with pytest.raises(Cut):
            service.sync_metadata("me", on_page=cut_at(2))
        assert service.store.counts("me").items == 20
        report = service.sync_metadata("me", incremental=True)
        assert report.fell_back_to_full and not report.caught_up and report.complete
        assert (report.pages, report.inserted) == (5, 22)
        assert service.store.counts("me").items == 42


def test_first_incremental_sync_of_a_profile_lists_everything(
    flow: FlowEmulator, tmp_path: Path
) -> None:
    service = service_for(flow, tmp_path / "c.db")
    report = service.sync_metadata("default", incremental=True)
    assert report.fell_back_to_full and report.fallback_reason is not None
    assert "no full sync" in report.fallback_reason
    assert report.complete and report.inserted == 42
    state = read_sync_state(service.store, "default")
    assert state.gapless and state.full_seq == report.sync_seq and state.full_at


@pytest.mark.parametrize("how", ["exception", "page-limit"])
def test_incremental_cut_short_makes_the_next_one_list_everything(
    flow: FlowEmulator, tmp_path: Path, how: str
) -> None:
    service = service_for(flow, tmp_path / "c.db")
    service.sync_metadata("default")
    flow.add_items(30)  # two pages of new items
    if how == "exception":
        with pytest.raises(Cut):
            service.sync_metadata("default", incremental=True, on_page=cut_at(1))
    else:
        limited = service_for(flow, tmp_path / "c.db", max_pages=1)
        report = limited.sync_metadata("default", incremental=True)
        assert report.stop is ListingStop.PAGE_LIMIT and not report.caught_up
    assert service.store.counts("default").items == 42 + 18
    report = service.sync_metadata("default", incremental=True)
    assert report.fell_back_to_full and report.complete
    assert service.store.counts("default").items == 72


def test_full_sync_cut_short_records_nothing_complete(flow: FlowEmulator, tmp_path: Path) -> None:
    service = service_for(flow, tmp_path / "c.db")
    done = service.sync_metadata("default")
    before = read_sync_state(service.store, "default")
    assert before.gapless and before.full_seq == done.sync_seq
    with pytest.raises(Cut):
        service.sync_metadata("default", on_page=cut_at(1))
    after = read_sync_state(service.store, "default")
    assert after.full_seq == before.full_seq and after.full_at == before.full_at
    assert after.last_seq == done.sync_seq + 1 and not after.gapless


def test_incremental_while_another_sync_runs_lists_everything(
    flow: FlowEmulator, tmp_path: Path
) -> None:
    a = service_for(flow, tmp_path / "c.db")
    b = service_for(flow, tmp_path / "c.db")
    a.sync_metadata("default")
    reports = []
    a.sync_metadata(
        "default", on_page=lambda p: p.page == 1 and reports.append(b.sync_metadata("default", incremental=True))
    )  # fmt: skip
    assert reports[0].fell_back_to_full and reports[0].complete
    assert read_sync_state(a.store, "default").gapless  # both finished


def test_forget_makes_the_next_incremental_list_everything(
    flow: FlowEmulator, tmp_path: Path
) -> None:
    service = service_for(flow, tmp_path / "c.db")
    service.sync_metadata("default")
    service.store.forget("default")
    report = service.sync_metadata("default", incremental=True)
    assert report.fell_back_to_full and report.inserted == 42


# ----------------------------------------------- pages that prove nothing


@attrs.define
class Listing:
    """A scripted listing, to drive run_sync without a service."""

    pages: list[ListingPage]
    stop: ListingStop | None = None

    def __iter__(self) -> Iterator[ListingPage]:
        yield from self.pages
        self.stop = ListingStop.END


def items(*numbers: int) -> tuple[MediaItem, ...]:
    base = datetime(2025, 10, 1, tzinfo=timezone.utc)
    return tuple(
        MediaItem(
            name=f"CAMa{n:03d}",
            media_type=MediaType.IMAGE,
            media_key=f"k{n}",
            create_time=base + timedelta(minutes=n),
        )
        for n in numbers
    )


@pytest.mark.parametrize(
    "first",
    [
        ListingPage(1, (), has_next=True),
        ListingPage(1, (), skipped=4, has_next=True),
        ListingPage(1, (), repeated=4, has_next=True),
    ],
    ids=["empty", "all-malformed", "all-repeats"],
)
def test_a_page_without_items_is_not_all_known(tmp_path: Path, first: ListingPage) -> None:
    with ImageStore(tmp_path / "c.db") as store:
        run_sync(Listing([ListingPage(1, items(1, 2, 3))]), store, "p", incremental=False)
        pages = [
            first,
            ListingPage(2, items(5, 4), has_next=True),
            ListingPage(3, items(3, 2), has_next=True),
            ListingPage(4, items(1)),
        ]
        report = run_sync(Listing(pages), store, "p", incremental=True)
        assert not report.fell_back_to_full
        assert report.caught_up and report.pages == 3 and report.inserted == 2
        assert store.counts("p").items == 5


def test_incremental_sync_marks_nothing_missing_even_when_it_lists_everything(
    tmp_path: Path,
) -> None:
    with ImageStore(tmp_path / "c.db") as store:
        run_sync(Listing([ListingPage(1, items(1, 2, 3))]), store, "p", incremental=False)
        # Item 4 is new, so the page is not all known; the listing ends without 1 and 2.
        report = run_sync(Listing([ListingPage(1, items(4, 3))]), store, "p", incremental=True)
        assert report.complete and not report.caught_up and report.marked_missing == 0
        assert store.counts("p").missing == 0
        assert read_sync_state(store, "p").full_seq == report.sync_seq  # a complete listing
        report = run_sync(Listing([ListingPage(1, items(4, 3))]), store, "p", incremental=False)
        assert report.marked_missing == 2
        assert {i.name for i in store.items("p", remote_state="missing")} == {"CAMa001", "CAMa002"}
