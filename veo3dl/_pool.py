"""DownloadPool: a process pool that contains a crash to one job and never hangs.

How jobs and results flow::

    caller threads                parent process                          workers
    ──────────────                ──────────────                          ───────
    submit(job) ──pickle──▶ pending deque ─┐
    as_completed(jobs)                     │  supervisor thread
       │ (bounded window)                  ▼  (one select() over every fd)
       │                        ┌─────────────────────────┐  job pipe 1   ┌──────────┐
       │                        │ dispatch to free slots  │──────────────▶│ worker 1 │
       │                        │ record job→worker,      │◀──────────────│ slots xN │
       │                        │   attempt, start time   │ result pipe 1 └──────────┘
       │                        │ sentinels: a worker     │  job pipe 2   ┌──────────┐
       │                        │   died → drain its pipe,│──────────────▶│ worker 2 │
       │                        │   re-queue its jobs,    │◀──────────────│          │
       │                        │   start a fresh worker  │ result pipe 2 └──────────┘
       │                        │ deadlines: job_timeout  │       ⋮
       │                        └───────────┬─────────────┘
       │                                    │ completions (batched)
       │                                    ▼
       └──────────◀── futures ◀──── completer thread (runs done-callbacks)

Each worker has its own pair of pipes: no queue, lock or semaphore is shared
between workers, so a worker killed at any instant — even half-way through
writing a result — harms only the jobs it held, and those run again on a
fresh worker, up to ``max_attempts`` times.  Workers exit by themselves when
the parent dies (see :mod:`veo3dl._worker`).
"""

from __future__ import annotations

import atexit
import functools
import multiprocessing
import multiprocessing.context
import pickle
import queue
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import CancelledError, Future
from multiprocessing import forkserver
from typing import Any, Generic, TypeVar

import attrs

from veo3dl._supervisor import Settings, Supervisor
from veo3dl._worker import HandlerRef
from veo3dl._worker_handle import JobRecord
from veo3dl.exceptions import ConfigError, PoolBroken

__all__ = ["DownloadPool", "JobOutcome", "PoolStatus"]

J = TypeVar("J")
_DEFAULT_HANDLER = HandlerRef("veo3dl._download", "default_handler")
_START_METHODS = ("spawn", "forkserver", "fork")


@attrs.frozen
class PoolStatus:
    """A snapshot of a :class:`DownloadPool`.

    ``busy`` counts jobs running now, ``queued`` jobs submitted and not yet
    started; ``completed`` and ``failed`` count finished jobs by outcome;
    ``restarts`` counts workers started to replace one that died.
    """

    workers: int
    workers_alive: int
    busy: int
    queued: int
    completed: int
    failed: int
    cancelled: int
    restarts: int
    closed: bool


@attrs.frozen
class JobOutcome(Generic[J]):
    """A finished job with its result or its exception."""

    job: J
    result: Any = None
    exception: BaseException | None = None

    @property
    def ok(self) -> bool:
        """True when the handler returned a result."""
        return self.exception is None

    def unwrap(self) -> Any:
        """The result, or raise the exception."""
        if self.exception is not None:
            raise self.exception
        return self.result


def _default_start_method() -> str:
    # forkserver: fork()ing a parent that runs threads (ours do) is unsafe,
    # and spawn pays a full interpreter start per restart.
    methods = multiprocessing.get_all_start_methods()
    return "forkserver" if "forkserver" in methods else "spawn"


def _preload_forkserver(context: multiprocessing.context.BaseContext) -> None:
    """Have the fork server import the worker (and download) code once, before forking.

    A worker then starts in milliseconds instead of re-importing veo3dl, which
    is what makes a replaced worker pick up its job again quickly.  Modules
    the application asked to preload are kept.
    """
    server = getattr(forkserver, "_forkserver", None)
    current = list(getattr(server, "_preload_modules", None) or ["__main__"])
    wanted = current + [m for m in ("veo3dl._worker", "veo3dl._download") if m not in current]
    context.set_forkserver_preload(wanted)


def _pickled(obj: object, what: str) -> bytes:
    try:
        return pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as error:
        raise ConfigError(
            f"the {what} cannot be pickled: {error}",
            hint="use a module-level function, or an instance of a module-level class",
        ) from error


class DownloadPool:
    """A pool of worker processes running ``handler(job)`` for each job.

    *handler* is any importable, picklable callable; ``None`` means veo3dl's
    own download handler for :class:`~veo3dl.DownloadJob`.  Each worker runs
    *slots_per_worker* jobs at once on threads.  A job whose worker dies is
    run again on a fresh worker, up to *max_attempts* starts, then fails with
    :class:`~veo3dl.exceptions.WorkerCrashed`; a job running longer than
    *job_timeout* seconds fails with :class:`~veo3dl.exceptions.JobTimeout`
    and its worker is killed (SIGTERM, then SIGKILL after *kill_grace*) and
    replaced.  *max_jobs_per_worker* recycles workers; *initializer* runs once
    in each worker.  *start_method* is ``"forkserver"`` (default where
    available), ``"spawn"`` or ``"fork"``.

    Used as a context manager, the pool shuts down gracefully on exit (all
    submitted jobs finish); if the block raised an exception, jobs not yet
    dispatched are cancelled and running ones finish; on ``KeyboardInterrupt``
    or ``SystemExit`` the workers are killed at once.
    """

    def __init__(
        self,
        workers: int = 4,
        handler: Callable[[Any], Any] | None = None,
        *,
        slots_per_worker: int = 1,
        max_attempts: int = 3,
        job_timeout: float | None = None,
        start_method: str | None = None,
        max_jobs_per_worker: int | None = None,
        initializer: Callable[[], Any] | None = None,
        kill_grace: float = 2.0,
    ) -> None:
        if not isinstance(workers, int) or workers < 1:
            raise ConfigError(f"workers must be a positive integer, got {workers!r}")
        if not isinstance(slots_per_worker, int) or slots_per_worker < 1:
            raise ConfigError(
                f"slots_per_worker must be a positive integer, got {slots_per_worker!r}"
            )
        if not isinstance(max_attempts, int) or max_attempts < 1:
            raise ConfigError(f"max_attempts must be a positive integer, got {max_attempts!r}")
        if job_timeout is not None and job_timeout <= 0:
            raise ConfigError(f"job_timeout must be positive seconds, got {job_timeout!r}")
        if max_jobs_per_worker is not None and max_jobs_per_worker < 1:
            raise ConfigError(f"max_jobs_per_worker must be positive, got {max_jobs_per_worker!r}")
        method = start_method or _default_start_method()
        if method not in _START_METHODS or method not in multiprocessing.get_all_start_methods():
            raise ConfigError(f"start_method {method!r} is not available here")
        if handler is not None and not callable(handler):
            raise ConfigError("handler must be callable")
        self.workers = workers
        self.slots_per_worker = slots_per_worker
        self.start_method = method
        context = multiprocessing.get_context(method)
        if method == "forkserver":
            _preload_forkserver(context)
        settings = Settings(
            context=context,
            workers=workers,
            slots=slots_per_worker,
            max_attempts=max_attempts,
            job_timeout=job_timeout,
            kill_grace=kill_grace,
            max_jobs_per_worker=max_jobs_per_worker,
            handler_blob=_pickled(handler if handler is not None else _DEFAULT_HANDLER, "handler"),
            initializer_blob=None if initializer is None else _pickled(initializer, "initializer"),
        )
        # Interpreter exit must not leave workers behind, nor wait on them: the
        # hook terminates a pool still running then; the supervisor removes it
        # when it ends, however it ends.
        self._exit_hook = _ExitHook()
        atexit.register(self._exit_hook)
        self._supervisor = Supervisor(
            settings, on_exit=functools.partial(atexit.unregister, self._exit_hook)
        )
        self._exit_hook.attach(self._supervisor)
        self._ids = iter(range(1, 1 << 62))
        self._ids_lock = threading.Lock()
        finalizer = weakref.finalize(self, _finalize, self._supervisor)
        finalizer.atexit = False  # at exit the hook above terminates instead

    def __repr__(self) -> str:
        s = self.status()
        return (
            f"<DownloadPool workers={s.workers_alive}/{s.workers} busy={s.busy} "
            f"queued={s.queued} start_method={self.start_method!r}{' closed' if s.closed else ''}>"
        )

    @property
    def capacity(self) -> int:
        """How many jobs run at once: workers times slots."""
        return self.workers * self.slots_per_worker

    # --------------------------------------------------------------- jobs

    def submit(self, job: Any) -> Future[Any]:
        """Queue *job*; its future completes with ``handler(job)`` or the exception.

        The job is pickled here, so an unpicklable job raises
        :class:`~veo3dl.exceptions.ConfigError` now.  ``future.cancel()``
        works until the job is dispatched to a worker.
        """
        payload = _pickled(job, f"job {type(job).__qualname__}")
        with self._ids_lock:
            job_id = next(self._ids)
        future: Future[Any] = Future()
        label = getattr(job, "name", None)
        record = JobRecord(job_id, payload, future, label if isinstance(label, str) else None)
        self._supervisor.enqueue(record)
        return future

    def as_completed(
        self,
        jobs: Iterable[J],
        *,
        in_flight: int | None = None,
        on_result: Callable[[JobOutcome[J]], object] | None = None,
    ) -> Iterator[JobOutcome[J]]:
        """Run *jobs*, yielding each :class:`JobOutcome` as it finishes.

        At most *in_flight* jobs (default: four times :attr:`capacity`, at least 64) are
        submitted at a time and *jobs* is read lazily, so an endless or huge
        iterable costs bounded memory.  *on_result* is called with each outcome
        before it is yielded, on the iterating thread.  Closing the iterator
        early cancels what has not started.
        """
        limit = in_flight if in_flight is not None else max(4 * self.capacity, 64)
        if limit < 1:
            raise ConfigError("in_flight must be at least 1")
        done: queue.SimpleQueue[tuple[J, Future[Any]]] = queue.SimpleQueue()
        outstanding: set[Future[Any]] = set()
        source = iter(jobs)
        exhausted = False
        try:
            while True:
                while not exhausted and len(outstanding) < limit:
                    try:
                        job = next(source)
                    except StopIteration:
                        exhausted = True
                        break
                    future = self.submit(job)
                    outstanding.add(future)
                    future.add_done_callback(_put_done(done, job))
                if not outstanding:
                    return
                job, future = self._next_done(done)
                outstanding.discard(future)
                outcome = _outcome(job, future)
                if on_result is not None:
                    on_result(outcome)
                yield outcome
        finally:
            for future in outstanding:
                future.cancel()

    def _next_done(self, done: queue.SimpleQueue[tuple[J, Future[Any]]]) -> tuple[J, Future[Any]]:
        while True:
            try:
                return done.get(timeout=0.5)
            except queue.Empty:
                if not self._supervisor.thread.is_alive() and done.empty():
                    raise PoolBroken("the pool stopped with jobs outstanding") from None

    # ------------------------------------------------------------- status

    def status(self) -> PoolStatus:
        """A consistent snapshot of the pool's counters."""

        def read(s: Supervisor) -> PoolStatus:
            return PoolStatus(
                workers=self.workers,
                workers_alive=len(s.pids),
                busy=s.running,
                queued=s.counts["submitted"]
                - s.counts["completed"]
                - s.counts["failed"]
                - s.counts["cancelled"]
                - s.running,
                completed=s.counts["completed"],
                failed=s.counts["failed"],
                cancelled=s.counts["cancelled"],
                restarts=s.counts["restarts"],
                closed=s.closing,
            )

        status: PoolStatus = self._supervisor.snapshot(read)
        return status

    def worker_pids(self) -> list[int]:
        """The process ids of the live workers."""
        return list(self._supervisor.snapshot(lambda s: s.pids))

    # ----------------------------------------------------------- shutdown

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop taking jobs; finish the submitted ones, then stop the workers.

        With *cancel_futures*, jobs not yet dispatched are cancelled instead.
        With ``wait=False`` this returns at once and the pool winds down by
        itself; so does a call from a future's done-callback, which runs on a
        thread the pool's shutdown itself waits for.  Idempotent.
        """
        self._supervisor.request_stop(terminate=False, cancel_pending=cancel_futures)
        if wait:
            self._supervisor.join(None)

    def terminate(self) -> None:
        """Kill every worker now; unfinished jobs fail with ``PoolClosed``."""
        self._supervisor.request_stop(terminate=True, cancel_pending=False)
        self._supervisor.join(10.0)

    def __enter__(self) -> DownloadPool:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        if exc_type is None:
            self.shutdown(wait=True)
        elif issubclass(exc_type, Exception):
            self.shutdown(wait=True, cancel_futures=True)
        else:  # KeyboardInterrupt, SystemExit: stop now
            self.terminate()


def _put_done(
    done: queue.SimpleQueue[tuple[J, Future[Any]]], job: J
) -> Callable[[Future[Any]], None]:
    def callback(future: Future[Any]) -> None:
        done.put((job, future))

    return callback


def _outcome(job: J, future: Future[Any]) -> JobOutcome[J]:
    if future.cancelled():
        return JobOutcome(job=job, exception=CancelledError())
    error = future.exception()
    if error is not None:
        return JobOutcome(job=job, exception=error)
    return JobOutcome(job=job, result=future.result())


class _ExitHook:
    """Terminates a pool still running at interpreter exit, without a hard wait."""

    def __init__(self) -> None:
        self._supervisor: weakref.ref[Supervisor] | None = None

    def attach(self, supervisor: Supervisor) -> None:
        """The supervisor to terminate (held weakly)."""
        self._supervisor = weakref.ref(supervisor)

    def __call__(self) -> None:
        supervisor = self._supervisor() if self._supervisor is not None else None
        if supervisor is not None and supervisor.thread.is_alive():
            supervisor.request_stop(terminate=True, cancel_pending=False)
            supervisor.join(10.0)


def _finalize(supervisor: Supervisor) -> None:
    """The pool object was dropped: finish its jobs in the background, then stop."""
    supervisor.request_stop(terminate=False, cancel_pending=False)
