"""Syncing the listing into the catalogue: every page, every item once.

Pages are written in batches (every :data:`FLUSH_ITEMS` items or
:data:`FLUSH_SECONDS`, whichever comes first), each batch one transaction of
whole pages: a sync cut off anywhere (an exception, a kill) leaves the pages
of every finished batch stored and the rest untouched, and the next sync
completes the job.  A commit per page would spend a fifth of a fast sync in
``COMMIT``.  Only a full listing that ended by itself may mark
items ``missing``, and only those no sync of its number or later listed (see
:mod:`veo3dl._sync_state`); an incremental sync (newest first, stop at the
first page whose items are all stored) never does.  An incremental sync on
a catalogue that may have holes (no full listing has completed since a sync
was cut short) lists everything instead, and says so in its report.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import attrs

from veo3dl._logging import get_logger
from veo3dl._models import ListingStop, MediaItem
from veo3dl._store import ImageStore, iso_utc
from veo3dl._sync_state import finish_sync, start_sync
from veo3dl._transport import PageListing

__all__ = ["SyncProgress", "SyncReport", "run_sync"]

_log = get_logger(__name__)
FLUSH_ITEMS = 1000
FLUSH_SECONDS = 0.5


@attrs.frozen
class SyncProgress:
    """Where a sync is, handed to ``on_page`` after each listed page.

    ``seen`` counts items listed so far; ``stored`` those committed to the
    catalogue, of which ``inserted`` were new.
    """

    profile_id: str
    page: int
    seen: int
    stored: int
    inserted: int


@attrs.frozen
class SyncReport:
    """What a sync did.

    ``complete`` is true when the listing was followed to its end (for a full
    sync, the only case in which vanished items are marked missing); ``loop_guard`` when the
    service looped and a guard ended the listing; ``caught_up`` when an
    incremental sync stopped at a page it already had.  ``incremental`` is
    what was asked for; ``fell_back_to_full`` is true when an incremental
    sync listed everything instead (``fallback_reason`` says why: no full
    listing had completed since a sync was cut short) — it still marks
    nothing missing.  ``sync_seq`` is the sync's sequence number in its
    profile.
    """

    profile_id: str
    pages: int
    seen: int
    inserted: int
    updated: int
    skipped_malformed: int
    repeated: int
    marked_missing: int
    stop: ListingStop | None
    complete: bool
    loop_guard: bool
    incremental: bool
    caught_up: bool
    duration: float
    fallback_reason: str | None = None
    sync_seq: int = 0

    @property
    def fell_back_to_full(self) -> bool:
        """True when an incremental sync listed everything instead (``fallback_reason`` says why)."""
        return self.fallback_reason is not None


def run_sync(
    listing: PageListing,
    store: ImageStore,
    profile_id: str,
    *,
    incremental: bool,
    on_page: Callable[[SyncProgress], object] | None = None,
) -> SyncReport:
    """Store every page of *listing* for *profile_id*; see the module docstring."""
    started = time.monotonic()
    sync_id = uuid.uuid4().hex
    synced_at = iso_utc()
    pages = seen = inserted = updated = skipped = repeated = 0
    caught_up = False
    log = _log.bind(profile_id=profile_id, incremental=incremental)
    with store.transaction("starting the sync") as db:
        start = start_sync(db.conn, profile_id, incremental=incremental)
    seq, stop_when_known = start.seq, start.incremental
    if start.fallback is not None:
        log.info("incremental_sync_lists_everything", reason=start.fallback)
    batch: list[MediaItem] = []
    flushed_at = time.monotonic()

    def flush() -> None:
        nonlocal inserted, updated, flushed_at
        if batch:
            with store.transaction("storing listing pages"):
                counts = store.upsert_items(
                    profile_id, batch, sync_seq=seq, synced_at=synced_at, sync_id=sync_id
                )
            inserted += counts.inserted
            updated += counts.updated
            log.debug("pages_stored", items=len(batch), inserted=counts.inserted)
            batch.clear()
        flushed_at = time.monotonic()

    try:
        for page in listing:
            pages += 1
            skipped += page.skipped
            repeated += page.repeated
            seen += len(page.items)
            # Read outside the write transaction: a hint for stopping, not a count.
            # A page with no items (empty, all malformed, all repeats) proves nothing.
            all_known = (
                stop_when_known
                and bool(page.items)
                and len(store.existing_names(profile_id, [i.name for i in page.items]))
                == len(page.items)
            )
            batch.extend(page.items)
            due = len(batch) >= FLUSH_ITEMS or time.monotonic() - flushed_at >= FLUSH_SECONDS
            if due or all_known or not page.has_next:
                flush()
            if on_page is not None:
                on_page(SyncProgress(profile_id, pages, seen, inserted + updated, inserted))
            if all_known:
                caught_up = True
                break
    except BaseException:
        # Whatever cut the listing short, keep the whole pages already listed.
        try:
            flush()
        except Exception as error:  # noqa: BLE001 - the original failure is the one to report
            log.warning("pages_not_stored", items=len(batch), error=str(error))
        raise
    flush()
    stop = None if caught_up else listing.stop
    complete = stop is not None and stop.complete
    marked = 0
    if complete or caught_up:  # no hole left; anything else counts as cut short
        marking = complete and not incremental
        with store.transaction("marking vanished items" if marking else "finishing the sync") as db:
            if marking:
                marked = store.mark_missing(profile_id, seq)
            finish_sync(db.conn, profile_id, seq, complete=complete, at=iso_utc())
    report = SyncReport(
        profile_id=profile_id,
        pages=pages,
        seen=seen,
        inserted=inserted,
        updated=updated,
        skipped_malformed=skipped,
        repeated=repeated,
        marked_missing=marked,
        stop=stop,
        complete=complete,
        loop_guard=stop is not None and stop.loop_guard,
        incremental=incremental,
        caught_up=caught_up,
        duration=time.monotonic() - started,
        fallback_reason=start.fallback,
        sync_seq=seq,
    )
    log.info(
        "sync_finished",
        pages=pages,
        seen=seen,
        inserted=inserted,
        missing=marked,
        stop=str(stop),
        seq=seq,
        fell_back_to_full=report.fell_back_to_full,
    )
    return report
