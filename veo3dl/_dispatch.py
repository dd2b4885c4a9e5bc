"""Which job goes to which worker: the supervisor's dispatch policy.

Pure decisions over the supervisor's records (no I/O), so each rule is easy
to state and to test:

* **Capacity.**  A worker holds its slots' worth of jobs, plus some queued
  ahead: a few milliseconds' worth of tiny jobs (hiding the round trip and
  batching pipe writes), one per slot of long jobs while the queue could fill
  every slot again.
* **Suspects run alone.**  When a worker holding several started jobs dies,
  nobody can tell which job killed it; none is charged an attempt, each is a
  *suspect*, and each suspect then runs on a worker holding nothing else.  A
  poison job so dies alone and is charged; its innocent neighbours finish.
* **Reclaim.**  A job queued ahead in a worker whose running job turns out
  long would wait while another worker idles: when the queue is empty and a
  worker has a free slot, such jobs are taken back and dispatched again.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable

from veo3dl._worker_handle import JobRecord, WorkerHandle

__all__ = ["capacity", "plan_dispatch", "reclaimable"]

PREFETCH_AHEAD = 0.005  # seconds of tiny jobs a worker may hold beyond its slots
PREFETCH_MAX = 64
_RECLAIM_AFTER = 0.05  # seconds a running job must have run before jobs behind it are taken back


def capacity(slots: int, avg_duration: float | None, pending: int, workers: int) -> int:
    """How many jobs one worker may hold (see the module docstring)."""
    if avg_duration is None:
        return slots
    if avg_duration < PREFETCH_AHEAD:
        ahead = min(PREFETCH_MAX, max(slots, int(PREFETCH_AHEAD / max(avg_duration, 1e-6))))
        return slots + ahead * slots
    return 2 * slots if pending >= workers * slots else slots


def _takes_work(worker: WorkerHandle) -> bool:
    return worker.ready and not worker.retiring and worker.kill_at is None and not worker.exited


def plan_dispatch(
    workers: Iterable[WorkerHandle],
    pending: collections.deque[JobRecord],
    *,
    slots: int,
    limit: int,
    max_jobs_per_worker: int | None,
) -> tuple[dict[WorkerHandle, list[JobRecord]], int]:
    """Take jobs from *pending* for workers with room; return the batches and how many were cancelled.

    The emptiest workers are filled first, to their slots, then to *limit*.
    The caller holds the lock that guards *pending*.
    """
    eligible = sorted((w for w in workers if _takes_work(w)), key=lambda w: len(w.held))
    isolating = {w for w in eligible if any(r.suspect for r in w.held.values())}
    batches: dict[WorkerHandle, list[JobRecord]] = {}
    deferred: list[JobRecord] = []
    cancelled = 0
    for bound in (slots, limit):
        for worker in eligible:
            if worker in isolating:
                continue
            room = bound - len(worker.held) - len(batches.get(worker, ()))
            if max_jobs_per_worker is not None:
                room = min(room, max_jobs_per_worker - worker.dispatched)
            while room > 0 and pending:
                record = pending.popleft()
                # A re-queued job's future is running already; a new one
                # becomes so now, unless its caller cancelled it.
                future = record.future
                if not future.running() and not future.set_running_or_notify_cancel():
                    cancelled += 1
                    continue
                if record.suspect:
                    if worker.held or worker in batches:
                        deferred.append(record)
                        continue
                    isolating.add(worker)
                    room = 0
                else:
                    room -= 1
                batches.setdefault(worker, []).append(record)
                worker.dispatched += 1
    pending.extendleft(reversed(deferred))
    return batches, cancelled


def reclaimable(
    workers: Iterable[WorkerHandle],
    *,
    pending: int,
    slots: int,
    avg_duration: float | None,
    now: float,
) -> tuple[dict[WorkerHandle, list[JobRecord]], float | None]:
    """Jobs to take back from busy workers, and when to look again (monotonic time).

    Only while nothing is pending and some worker has a free slot; a job is
    taken back from a worker whose oldest running job has run long enough
    that the job would have started sooner elsewhere.
    """
    workers = list(workers)
    if pending or not any(_takes_work(w) and len(w.held) < slots for w in workers):
        return {}, None
    threshold = max(_RECLAIM_AFTER, 4 * (avg_duration or 0.0))
    taken: dict[WorkerHandle, list[JobRecord]] = {}
    next_look: float | None = None
    for worker in workers:
        waiting = [r for r in worker.held.values() if r.started is None and not r.reclaiming]
        started = [r.started for r in worker.held.values() if r.started is not None]
        if not waiting or not started:
            continue
        due = min(started) + threshold
        if now >= due:
            taken[worker] = waiting
        else:
            next_look = due if next_look is None else min(next_look, due)
    return taken, next_look
