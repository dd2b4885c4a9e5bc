"""What becomes of the jobs of a worker that died, overran or went silent.

Pure decisions over the supervisor's records (no I/O, no locks), like
:mod:`veo3dl._dispatch`, so each rule can be stated once:

* **Who is charged.**  A job that was running alone when its worker died is
  charged the attempt and marked a suspect; after ``max_attempts`` charged
  deaths it fails with :class:`~veo3dl.exceptions.WorkerCrashed`.  Jobs that
  died together, or whose worker was killed for *another* job's timeout, are
  not charged: they run again (alone, if suspects).
* **Deadlines.**  A started job may run ``job_timeout``; a worker holding
  jobs none of which has started must say something within ``job_timeout``
  of the later of their dispatch and its last message, or it is wedged.
"""

from __future__ import annotations

import signal
from collections.abc import Iterable

import attrs

from veo3dl._worker_handle import JobRecord, WorkerHandle
from veo3dl.exceptions import WorkerCrashed

__all__ = ["Salvage", "crash_error", "deadlines", "salvage", "wedged"]


@attrs.define
class Salvage:
    """The fate of a dead worker's jobs: run again, or fail with the error given."""

    requeue: list[JobRecord] = attrs.field(factory=list)
    failed: list[tuple[JobRecord, WorkerCrashed]] = attrs.field(factory=list)
    were_running: int = 0


def salvage(
    held: Iterable[JobRecord],
    *,
    killed_for_timeout: bool,
    max_attempts: int,
    exitcode: int | None,
) -> Salvage:
    """Decide what happens to each job a dead worker held (records are updated in place)."""
    records = [r for r in held if not r.timed_out]  # a timed-out job has failed already
    started = [r for r in records if r.started is not None]
    fate = Salvage(were_running=len(started))
    for record in records:
        if record.started is not None:
            if killed_for_timeout:
                record.attempts -= 1  # killed for another job's timeout: not its fault
            elif len(started) > 1:
                # Several jobs died together: none is known guilty, none is
                # charged, and each runs alone next (see _dispatch).
                record.attempts -= 1
                record.suspect = True
            else:
                record.suspect = True
                if record.attempts >= max_attempts:
                    fate.failed.append((record, crash_error(record, exitcode)))
                    continue
        record.started = None
        record.reclaiming = False
        fate.requeue.append(record)
    return fate


def crash_error(record: JobRecord, exitcode: int | None) -> WorkerCrashed:
    """The error of a job whose worker died on each of its attempts."""
    signal_name = None
    if exitcode is not None and exitcode < 0:
        try:
            signal_name = signal.Signals(-exitcode).name
        except ValueError:
            signal_name = f"signal {-exitcode}"
    how = signal_name or f"exit code {exitcode}"
    return WorkerCrashed(
        f"the worker running this job died ({how}) on each of {record.attempts} attempts",
        exitcode=exitcode,
        signal_name=signal_name,
        attempts=record.attempts,
        item=record.label,
    )


def wedged(worker: WorkerHandle, now: float, timeout: float) -> bool:
    """True when *worker* holds jobs, has started none, and has been silent too long."""
    if not worker.held or worker.kill_at is not None:
        return False
    if any(r.started is not None for r in worker.held.values()):
        return False
    oldest = min(r.dispatched for r in worker.held.values())
    return now - max(oldest, worker.last_heard) >= timeout


def deadlines(workers: Iterable[WorkerHandle], job_timeout: float | None) -> list[float]:
    """Every moment at which a worker must be killed or a job times out."""
    found = [w.kill_at for w in workers if w.kill_at is not None]
    if job_timeout is None:
        return found
    for worker in workers:
        started = [
            r.started for r in worker.held.values() if r.started is not None and not r.timed_out
        ]
        if started:
            found.append(min(started) + job_timeout)
        elif worker.held and worker.kill_at is None:
            oldest = min(r.dispatched for r in worker.held.values())
            found.append(max(oldest, worker.last_heard) + job_timeout)
    return found
