"""Per-profile sync state: sequence numbers, and whether the catalogue has holes.

Every sync takes its profile's next sequence number when it starts, in one
transaction, and stamps each row it lists with it (``last_sync_seq``, never
lowered).  A complete full listing marks missing only the rows whose stamp
is lower than its own number: a row that a later, overlapping sync listed
carries that sync's higher number and stays present, whatever became of the
later sync.

An incremental sync stops at the first page it already holds.  That is only
right when the catalogue has no holes, and a sync cut short (an exception, a
kill, a page limit, a loop guard) can leave one: it stored the newest pages
but not the older items past them.  ``clean_seq`` is the number of the latest
sync that finished without leaving a hole (a complete listing, or an
incremental sync that caught up on a catalogue without holes); the catalogue
is trusted when a full listing has completed and no sync started after that
one (``clean_seq == last_seq``).  A sync that is still running counts as cut
short: overlapping syncs are rare, and listing everything is always safe.
Otherwise an incremental sync lists everything instead (and still marks
nothing missing).

The functions taking a connection run in the caller's ``BEGIN IMMEDIATE``
transaction, so that checking the state and changing it are one step.
"""

from __future__ import annotations

import sqlite3

import attrs

from veo3dl._store import ImageStore

__all__ = ["SyncStart", "SyncState", "finish_sync", "read_sync_state", "start_sync"]

# The table is STATE_TABLE of veo3dl._schema (migration 2); named here in
# full so that every statement is a constant.
_SELECT = (
    "SELECT last_seq, clean_seq, full_seq, full_at FROM veo3dl_sync_state WHERE profile_id = ?"
)


@attrs.frozen
class SyncState:
    """One profile's sync state.

    ``last_seq`` is the number of the latest sync started; ``clean_seq`` that
    of the latest one that finished leaving no hole; ``full_seq`` and
    ``full_at`` (ISO 8601 UTC) those of the latest complete listing, or
    ``None`` when none has completed.
    """

    profile_id: str
    last_seq: int = 0
    clean_seq: int = 0
    full_seq: int | None = None
    full_at: str | None = None

    @property
    def gapless(self) -> bool:
        """True when an incremental sync may trust the catalogue (see the module docstring)."""
        return self.full_seq is not None and self.clean_seq == self.last_seq

    @property
    def why_not_gapless(self) -> str | None:
        """Why an incremental sync must list everything, or ``None``."""
        if self.full_seq is None:
            return "no full sync has completed for this profile"
        if self.clean_seq != self.last_seq:
            return "a sync since the last complete one was cut short (or is still running)"
        return None


@attrs.frozen
class SyncStart:
    """A sync's number, and whether it runs incrementally.

    ``fallback`` says why an incremental sync was asked for but lists
    everything instead (``None`` otherwise).
    """

    seq: int
    incremental: bool
    fallback: str | None = None


def _read(conn: sqlite3.Connection, profile_id: str) -> SyncState:
    row = conn.execute(_SELECT, (profile_id,)).fetchone()
    if row is None:
        return SyncState(profile_id)
    last_seq, clean_seq, full_seq, full_at = row
    return SyncState(profile_id, int(last_seq), int(clean_seq), full_seq, full_at)


def start_sync(conn: sqlite3.Connection, profile_id: str, *, incremental: bool) -> SyncStart:
    """Allocate the next sequence number for *profile_id*; decide if incremental may run."""
    state = _read(conn, profile_id)
    fallback = state.why_not_gapless if incremental else None
    seq = state.last_seq + 1
    conn.execute(
        "INSERT INTO veo3dl_sync_state (profile_id, last_seq) VALUES (?, ?) "
        "ON CONFLICT(profile_id) DO UPDATE SET last_seq = excluded.last_seq",
        (profile_id, seq),
    )
    return SyncStart(seq=seq, incremental=incremental and fallback is None, fallback=fallback)


def finish_sync(
    conn: sqlite3.Connection, profile_id: str, seq: int, *, complete: bool, at: str
) -> None:
    """Record that sync *seq* finished leaving no hole; *complete*: it listed everything."""
    state = _read(conn, profile_id)
    clean_seq = max(state.clean_seq, seq)
    full_seq, full_at = state.full_seq, state.full_at
    if complete and seq >= (full_seq or 0):
        full_seq, full_at = seq, at
    conn.execute(
        "UPDATE veo3dl_sync_state SET clean_seq = ?, full_seq = ?, full_at = ? WHERE profile_id = ?",
        (clean_seq, full_seq, full_at, profile_id),
    )


def read_sync_state(store: ImageStore, profile_id: str) -> SyncState:
    """*profile_id*'s sync state in *store* (all zero and ``None`` before its first sync)."""
    return _read(store.db.conn, profile_id)
