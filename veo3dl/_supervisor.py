"""The supervisor: one thread of the pool's parent that runs everything else.

It alone touches the workers.  One ``select`` waits on every worker's result
pipe, every worker's process sentinel, the pipes that still have jobs to
write, and a wake-up pipe (new jobs, shutdown), with the next deadline as its
timeout.  Around it, the supervisor dispatches queued jobs (by the rules of
:mod:`veo3dl._dispatch`), records each job's worker, attempts and start
time, turns ``DONE`` events into completed futures (on the
:class:`~veo3dl._completer.Completer`'s thread), replaces dead workers and
re-runs their jobs (by the rules of :mod:`veo3dl._casualties`), kills jobs
past ``job_timeout`` and workers that stopped
answering, and gives up on a crash loop.
"""

from __future__ import annotations

import collections
import pickle
import selectors
import threading
import time
import traceback
from collections.abc import Callable
from multiprocessing.context import BaseContext
from typing import Any

from veo3dl import _wire
from veo3dl._casualties import deadlines, salvage, wedged
from veo3dl._completer import Completer, Completion, RemoteTraceback
from veo3dl._dispatch import capacity, plan_dispatch, reclaimable
from veo3dl._logging import get_logger
from veo3dl._wakeup import WakePipe
from veo3dl._worker_handle import JobRecord, WorkerHandle
from veo3dl.exceptions import (
    HandlerError,
    JobTimeout,
    PoolBroken,
    PoolClosed,
    PoolError,
)

__all__ = ["Settings", "Supervisor"]

_log = get_logger(__name__)
_STOP_GRACE = 5.0  # seconds a stopping worker gets before SIGKILL


class Settings:
    """The pool's fixed configuration, as the supervisor needs it."""

    def __init__(
        self,
        *,
        context: BaseContext,
        workers: int,
        slots: int,
        max_attempts: int,
        job_timeout: float | None,
        kill_grace: float,
        max_jobs_per_worker: int | None,
        handler_blob: bytes,
        initializer_blob: bytes | None,
    ) -> None:
        self.context = context
        self.workers = workers
        self.slots = slots
        self.max_attempts = max_attempts
        self.job_timeout = job_timeout
        self.kill_grace = kill_grace
        self.max_jobs_per_worker = max_jobs_per_worker
        self.handler_blob = handler_blob
        self.initializer_blob = initializer_blob
        self.crash_loop_limit = 3 + workers


class Supervisor:
    """Runs the pool's workers on one thread; everything public is thread-safe."""

    def __init__(self, settings: Settings, on_exit: Callable[[], None] = lambda: None) -> None:
        self.settings = settings
        self.lock = threading.Lock()
        self.pending: collections.deque[JobRecord] = collections.deque()
        self.counts = collections.Counter[str]()
        self.pids: list[int] = []
        self.closing = False
        self.terminating = False
        self.broken: PoolError | None = None
        self.running = 0
        self._on_exit_hook = on_exit
        self._workers: list[WorkerHandle] = []
        self._wake = WakePipe()
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._wake.fileno(), selectors.EVENT_READ, ("wake", None))
        self._completions: list[Completion] = []
        self.completer = Completer()
        self._avg_duration: float | None = None
        self._early_deaths = 0
        self._numbering = 0
        self._stop_deadline: float | None = None
        self._next_reclaim: float | None = None
        self.thread = threading.Thread(
            target=self._main, name="veo3dl-pool-supervisor", daemon=True
        )
        self.thread.start()

    # --------------------------------------------------- called by any thread

    def wake(self) -> None:
        """Make the supervisor look at its queue and flags (cheap when repeated)."""
        self._wake.wake()

    def enqueue(self, record: JobRecord) -> None:
        """Queue a submitted job (the caller holds no lock)."""
        with self.lock:
            if self.broken is not None:
                raise PoolBroken(f"the pool is broken: {self.broken}")
            if self.closing:
                raise PoolClosed("the pool is shut down; it takes no more jobs")
            self.pending.append(record)
            self.counts["submitted"] += 1
        self.wake()

    # ------------------------------------------------------------ the loop

    def _main(self) -> None:
        try:
            for _ in range(self.settings.workers):
                self._spawn()
            while self._step():
                pass
        except BaseException as error:  # noqa: BLE001 - never die silently with futures pending
            _log.error("pool_supervisor_failed", error=traceback.format_exc())
            self._fail_everything(PoolBroken(f"the pool's supervisor failed: {error!r}"))
        finally:
            if self.terminating:
                self._fail_everything(PoolClosed("the pool was terminated"))
            self._shut_workers()
            self._selector.close()
            self._wake.close()
            self._flush_completions()
            self.completer.close(timeout=5.0)
            self._on_exit_hook()

    def _step(self) -> bool:
        if self.terminating:
            return False
        self._dispatch()
        events = self._selector.select(self._timeout())
        for key, mask in events:
            kind, worker = key.data
            # An earlier event of this batch may have retired the worker, and
            # its fd numbers may already belong to its replacement.
            if worker is not None and worker.exited:
                continue
            if kind == "wake":
                self._wake.drain()
            elif kind == "result":
                self._read(worker)
            elif kind == "exit":
                self._on_exit(worker)
            elif kind == "write" and mask & selectors.EVENT_WRITE and worker.flush():
                self._watch_writes(worker, False)
        self._check_deadlines()
        self._reclaim()
        self._flush_completions()
        return not self._finished()

    def _timeout(self) -> float | None:
        found = deadlines(self._workers, self.settings.job_timeout)
        found += [d for d in (self._stop_deadline, self._next_reclaim) if d is not None]
        if not found:
            return None
        return max(0.0, min(found) - time.monotonic())

    # ----------------------------------------------------------- dispatch

    def _dispatch(self) -> None:
        if not self.pending or self.terminating:
            return
        settings = self.settings
        with self.lock:
            limit = capacity(
                settings.slots, self._avg_duration, len(self.pending), len(self._workers)
            )
            batches, cancelled = plan_dispatch(
                self._workers,
                self.pending,
                slots=settings.slots,
                limit=limit,
                max_jobs_per_worker=settings.max_jobs_per_worker,
            )
            self.counts["cancelled"] += cancelled
        now = time.monotonic()
        for worker, batch in batches.items():
            for record in batch:
                record.dispatched = now
                worker.held[record.id] = record
            worker.send((_wire.JOBS, [(r.id, r.payload) for r in batch]))
            if worker.dispatched == settings.max_jobs_per_worker:
                worker.send((_wire.STOP,))
                worker.retiring = True
            if worker.outbox:
                self._watch_writes(worker, True)

    def _reclaim(self) -> None:
        taken, self._next_reclaim = reclaimable(
            self._workers,
            pending=len(self.pending),
            slots=self.settings.slots,
            avg_duration=self._avg_duration,
            now=time.monotonic(),
        )
        for worker, records in taken.items():
            for record in records:
                record.reclaiming = True
            worker.send((_wire.RECLAIM, [r.id for r in records]))
            if worker.outbox:
                self._watch_writes(worker, True)

    def _watch_writes(self, worker: WorkerHandle, on: bool) -> None:
        key = ("write", worker)
        try:
            if on:
                self._selector.register(worker.job_fd, selectors.EVENT_WRITE, key)
            else:
                self._selector.unregister(worker.job_fd)
        except (KeyError, ValueError):
            pass

    # ------------------------------------------------------------- events

    def _read(self, worker: WorkerHandle) -> None:
        messages = worker.reader.read_available()
        if messages:
            worker.last_heard = time.monotonic()
        for message in messages:
            self._handle(worker, message)
        if worker.reader.eof and worker.result_open:
            worker.result_open = False
            self._selector.unregister(worker.result_fd)

    def _handle(self, worker: WorkerHandle, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == _wire.EVENTS:
            now = time.monotonic()
            for event in message[1]:
                record = worker.held.get(event[1])
                if record is None:
                    continue
                if event[0] == _wire.STARTED:
                    record.started = now
                    record.attempts += 1
                    record.reclaiming = False
                    self.running += 1
                    worker.started_any = True
                    self._early_deaths = 0
                elif event[0] == _wire.RECLAIMED:
                    del worker.held[record.id]
                    record.reclaiming = False
                    with self.lock:
                        self.pending.appendleft(record)
                else:
                    del worker.held[record.id]
                    self._finished_job(record, event[2], event[3], now)
        elif kind == _wire.READY:
            worker.ready = True
        elif kind == _wire.INIT_FAILED:
            worker.init_error = message[1]

    def _finished_job(self, record: JobRecord, ok: bool, payload: bytes, now: float) -> None:
        if record.started is not None:
            duration = now - record.started
            avg = self._avg_duration
            self._avg_duration = duration if avg is None else 0.8 * avg + 0.2 * duration
        if record.timed_out:
            return  # failed already, and no longer counted as running
        if record.started is not None:
            self.running -= 1
        try:
            value = pickle.loads(payload)
        except BaseException as exc:  # noqa: BLE001 - a result the parent cannot rebuild fails its job alone
            error = HandlerError(
                f"the job's result could not be unpickled: {exc!r}", exc_type=type(exc).__qualname__
            )
            ok, value = False, (error, "")
        if not ok:
            error, remote_tb = value
            if remote_tb and isinstance(error, BaseException):
                error.__cause__ = RemoteTraceback(remote_tb)
            value = error
        self._complete(record, ok, value)

    def _complete(self, record: JobRecord, ok: bool, value: Any) -> None:
        with self.lock:
            self.counts["completed" if ok else "failed"] += 1
        self._completions.append((record.future, ok, value))

    def _flush_completions(self) -> None:
        batch, self._completions = self._completions, []
        self.completer.put(batch)

    # ------------------------------------------------------ deaths, timeouts

    def _on_exit(self, worker: WorkerHandle) -> None:
        self._read(worker)  # what it managed to send still counts
        exitcode = worker.reap()
        worker.kill()  # anything its handler started dies with it (the group outlives its leader)
        for fd in (worker.sentinel, worker.result_fd, worker.job_fd):
            try:
                self._selector.unregister(fd)
            except (KeyError, ValueError):
                pass
        worker.close()
        self._workers.remove(worker)
        self._publish_pids()
        planned = worker.retiring and exitcode == 0 and not worker.held
        if not worker.started_any and not planned:
            self._early_deaths += 1
        requeue = self._salvage(worker, exitcode)
        if requeue:
            with self.lock:
                self.pending.extendleft(reversed(requeue))
        if not planned:
            _log.warning("worker_died", pid=worker.pid, exitcode=exitcode, requeued=len(requeue))
        if self._early_deaths >= self.settings.crash_loop_limit:
            detail = f"; the last one reported:\n{worker.init_error}" if worker.init_error else ""
            self._fail_everything(
                PoolBroken(
                    f"{self._early_deaths} workers in a row died before taking a job (last exit code {exitcode}){detail}",
                    hint="check the handler and initializer import and run in a fresh process",
                )
            )
            return
        if not self.terminating and (not self.closing or self._work_left()):
            if not planned:
                with self.lock:
                    self.counts["restarts"] += 1
            self._spawn()

    def _salvage(self, worker: WorkerHandle, exitcode: int | None) -> list[JobRecord]:
        """Decide the fate of a dead worker's jobs; return those to run again."""
        fate = salvage(
            worker.held.values(),
            killed_for_timeout=worker.killed_for_timeout,
            max_attempts=self.settings.max_attempts,
            exitcode=exitcode,
        )
        worker.held.clear()
        self.running -= fate.were_running
        for record, error in fate.failed:
            self._complete(record, False, error)
        return fate.requeue

    def _check_deadlines(self) -> None:
        now = time.monotonic()
        timeout = self.settings.job_timeout
        for worker in self._workers:
            if worker.kill_at is not None and now >= worker.kill_at:
                worker.kill()
            if timeout is None:
                continue
            for record in worker.held.values():
                if (
                    record.started is not None
                    and not record.timed_out
                    and now - record.started >= timeout
                ):
                    record.timed_out = True
                    self.running -= 1
                    worker.killed_for_timeout = True
                    error = JobTimeout(
                        f"the job ran longer than {timeout:g} s", timeout=timeout, item=record.label
                    )
                    self._complete(record, False, error)
                    worker.begin_kill(self.settings.kill_grace)
            if wedged(worker, now, timeout):
                # Jobs were sent, none started, nothing heard: stopped or stuck.
                _log.warning("worker_unresponsive", pid=worker.pid, waiting=len(worker.held))
                worker.kill()
        if self._stop_deadline is not None and now >= self._stop_deadline:
            for worker in self._workers:
                worker.kill()

    # ------------------------------------------------------- starting, ending

    def _spawn(self) -> None:
        self._numbering += 1
        inherited: list[int] = []
        if self.settings.context.get_start_method() == "fork":
            inherited = [fd for w in self._workers for fd in w.fds()] + self._wake.fds()
        worker = WorkerHandle(
            self.settings.context,
            self._numbering,
            handler_blob=self.settings.handler_blob,
            initializer_blob=self.settings.initializer_blob,
            slots=self.settings.slots,
            inherited_fds=inherited,
        )
        self._workers.append(worker)
        self._selector.register(worker.result_fd, selectors.EVENT_READ, ("result", worker))
        self._selector.register(worker.sentinel, selectors.EVENT_READ, ("exit", worker))
        self._publish_pids()

    def _publish_pids(self) -> None:
        with self.lock:
            self.pids = [w.pid for w in self._workers]

    def _work_left(self) -> bool:
        return bool(self.pending) or any(w.held for w in self._workers)

    def _finished(self) -> bool:
        """True when the loop may end: closing, no work left, every worker gone."""
        if self.broken is not None or self.terminating:
            return True
        if not self.closing or self._work_left():
            return False
        if self._stop_deadline is None:
            self._stop_deadline = time.monotonic() + _STOP_GRACE
            for worker in self._workers:
                if not worker.retiring:
                    worker.retiring = True
                    worker.send((_wire.STOP,))
        return not self._workers

    def _fail_everything(self, error: PoolError) -> None:
        with self.lock:
            if isinstance(error, PoolBroken) and self.broken is None:
                self.broken = error
            records = list(self.pending)
            self.pending.clear()
        for worker in self._workers:
            held = [r for r in worker.held.values() if not r.timed_out]
            self.running -= sum(1 for r in held if r.started is not None)
            records += held
            worker.held.clear()
        for record in records:
            self._complete(record, False, error)

    def _shut_workers(self) -> None:
        """Kill what is left and reap it, with a deadline; never blocks for long."""
        for worker in self._workers:
            worker.kill()
        deadline = time.monotonic() + 5.0
        for worker in self._workers:
            worker.process.join(max(0.0, deadline - time.monotonic()))
            worker.close()
        self._workers.clear()
        self._publish_pids()

    def request_stop(self, *, terminate: bool, cancel_pending: bool) -> None:
        """Begin a shutdown (graceful) or a termination (immediate)."""
        never_dispatched: list[JobRecord] = []
        with self.lock:
            self.closing = True
            self.terminating = self.terminating or terminate
            if cancel_pending:
                never_dispatched = [r for r in self.pending if not r.future.running()]
                kept = [r for r in self.pending if r.future.running()]
                self.pending = collections.deque(kept)
                self.counts["cancelled"] += len(never_dispatched)
        # Outside the lock: cancel() runs done-callbacks, which may call back into the pool.
        for record in never_dispatched:
            record.future.cancel()
        self.wake()

    def join(self, timeout: float | None) -> bool:
        """Wait for the supervisor thread to end; True if it did.

        Never waits from the supervisor's own threads (a done-callback runs on
        the completer thread, which the supervisor itself waits for).
        """
        if threading.current_thread() not in (self.thread, self.completer.thread):
            self.thread.join(timeout)
        return not self.thread.is_alive()

    def snapshot(self, fn: Callable[[Supervisor], Any]) -> Any:
        """Call *fn* under the lock (for a consistent status)."""
        with self.lock:
            return fn(self)
