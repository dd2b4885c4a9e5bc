"""Leases on catalogue items, so that two runs downloading one library fetch each item once.

A download call claims the items it is about to fetch: it writes its owner
id and an expiry into ``claimed_by`` / ``claim_expires`` in one
``BEGIN IMMEDIATE`` transaction, taking only items nobody holds.  Another run
skips what is claimed.  While it works, a heartbeat thread extends the
leases; at the end they are released.

A lease outlives a run that was killed, until it expires — unless its owner
is on this machine and provably dead (its pid is gone, or now belongs to a
process started at another time), in which case it is taken over at once:
rerunning after a crash should not wait out the lease.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Iterable, Iterator

from veo3dl._logging import get_logger
from veo3dl._schema import TABLE
from veo3dl._store import ImageStore

__all__ = ["Leases"]

_CHUNK = 400
_log = get_logger(__name__)


def _start_time(pid: int) -> str | None:
    """The kernel's start time of *pid* (Linux), to tell a reused pid apart."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            fields = handle.read().rsplit(b")", 1)[1].split()
        return fields[19].decode()
    except (OSError, IndexError):
        return None


def _owner_id() -> str:
    pid = os.getpid()
    return f"{socket.gethostname()}:{pid}:{_start_time(pid) or '-'}:{uuid.uuid4().hex[:8]}"


def _owner_dead(owner: str) -> bool:
    """True when *owner* ran on this machine and its process is gone."""
    try:
        host, pid_text, started, _ = owner.rsplit(":", 3)
        pid = int(pid_text)
    except ValueError:
        return False
    if host != socket.gethostname():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    return started != "-" and _start_time(pid) not in (started, None)


def _chunks(names: list[str]) -> Iterator[list[str]]:
    for start in range(0, len(names), _CHUNK):
        yield names[start : start + _CHUNK]


class Leases:
    """The leases one download call holds for *profile_id* (a context manager)."""

    def __init__(self, store: ImageStore, profile_id: str, *, seconds: float = 120.0) -> None:
        self.store = store
        self.profile_id = profile_id
        self.seconds = seconds
        self.owner = _owner_id()
        self.held: set[str] = set()
        self._stop = threading.Event()
        self._heartbeat: threading.Thread | None = None

    def claim(self, names: Iterable[str]) -> set[str]:
        """Take every one of *names* nobody else holds; return those now held."""
        wanted = sorted(set(names))
        now = time.time()
        taken: set[str] = set()
        with self.store.transaction("claiming items") as db:
            for chunk in _chunks(wanted):
                marks = ", ".join("?" * len(chunk))
                rows = db.conn.execute(
                    f"SELECT name, claimed_by, claim_expires FROM {TABLE} "
                    f"WHERE profile_id = ? AND name IN ({marks})",
                    [self.profile_id, *chunk],
                ).fetchall()
                free = [
                    name
                    for name, owner, expires in rows
                    if owner in (None, self.owner) or (expires or 0) < now or _owner_dead(owner)
                ]
                for part in _chunks(free):
                    marks = ", ".join("?" * len(part))
                    db.conn.execute(
                        f"UPDATE {TABLE} SET claimed_by = ?, claim_expires = ? "
                        f"WHERE profile_id = ? AND name IN ({marks})",
                        [self.owner, now + self.seconds, self.profile_id, *part],
                    )
                taken.update(free)
        self.held |= taken
        return taken

    def renew(self) -> None:
        """Extend every lease held."""
        with self.store.transaction("renewing leases") as db:
            db.conn.execute(
                f"UPDATE {TABLE} SET claim_expires = ? WHERE profile_id = ? AND claimed_by = ?",
                (time.time() + self.seconds, self.profile_id, self.owner),
            )

    def release(self) -> None:
        """Give every lease back."""
        self._stop.set()
        if self._heartbeat is not None and self._heartbeat is not threading.current_thread():
            self._heartbeat.join(10.0)
        with self.store.transaction("releasing leases") as db:
            db.conn.execute(
                f"UPDATE {TABLE} SET claimed_by = NULL, claim_expires = NULL "
                "WHERE profile_id = ? AND claimed_by = ?",
                (self.profile_id, self.owner),
            )
        self.held.clear()

    def _beat(self) -> None:
        while not self._stop.wait(self.seconds / 3):
            try:
                self.renew()
            except Exception as error:  # noqa: BLE001 - a busy database now is retried at the next beat
                _log.warning("lease_renewal_failed", error=str(error))

    def __enter__(self) -> Leases:
        self._heartbeat = threading.Thread(target=self._beat, name="veo3dl-leases", daemon=True)
        self._heartbeat.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()
