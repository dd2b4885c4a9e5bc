"""The worker process of :class:`~veo3dl.DownloadPool`.

A worker knows nothing of Flow or SQLite: it loads the handler, takes jobs
from its own job pipe, calls the handler on ``slots`` threads, and reports
``STARTED``/``DONE`` events on its own result pipe (see :mod:`veo3dl._wire`).

It must never outlive the parent.  Three watches, because each has a gap:

* ``PR_SET_PDEATHSIG`` (Linux) kills it when the parent *thread* that
  started it ends — the pool starts workers from its long-lived supervisor
  thread for that reason — but under forkserver the "parent" is the fork
  server, which survives a SIGKILLed pool;
* a thread waits on a pidfd of the pool's process (polling its pid where
  pidfds are missing), which catches that case;
* end-of-file on the job pipe, once the parent's end is closed.

A worker leads its own process group, so the pool can kill a timed-out job
together with any process its handler started, and a Ctrl-C in the terminal
reaches the parent only, which then shuts the pool down in order.
"""

from __future__ import annotations

import collections
import ctypes
import importlib
import os
import pickle
import select
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from veo3dl import _wire
from veo3dl.exceptions import HandlerError

__all__ = ["HandlerRef", "worker_main"]

_PR_SET_PDEATHSIG = 1
_EXIT_PARENT_GONE = 70
_EXIT_INIT_FAILED = 3
_STOP = object()


class HandlerRef:
    """A handler named by module and factory, built in the worker.

    Lets the pool default to veo3dl's download handler without importing it
    (the pool must not depend on the client), and gives each worker process
    a handler instance of its own.
    """

    __slots__ = ("factory", "module")

    def __init__(self, module: str, factory: str) -> None:
        self.module = module
        self.factory = factory

    def __reduce__(self) -> tuple[Any, ...]:
        return (HandlerRef, (self.module, self.factory))

    def __repr__(self) -> str:
        return f"HandlerRef({self.module!r}, {self.factory!r})"

    def build(self) -> Callable[[Any], Any]:
        """Import the module and call the factory."""
        module = importlib.import_module(self.module)
        handler: Callable[[Any], Any] = getattr(module, self.factory)()
        return handler


def worker_main(  # noqa: PLR0917 - the Process target takes positional args
    job_conn: Connection,
    result_conn: Connection,
    parent_pid: int,
    handler_blob: bytes,
    initializer_blob: bytes | None,
    slots: int,
    inherited_fds: list[int],
) -> None:
    """Entry point of a worker process (the ``target`` the pool starts)."""
    for fd in inherited_fds:  # fork only: the pool's ends of other workers' pipes
        try:
            os.close(fd)
        except OSError:
            pass
    _become_group_leader()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _set_parent_death_signal()
    threading.Thread(
        target=_watch_parent, args=(parent_pid,), name="veo3dl-parent-watch", daemon=True
    ).start()

    result_fd = result_conn.fileno()
    send_lock = threading.Lock()

    def send(message: tuple[Any, ...]) -> None:
        frame = _wire.encode(message)
        with send_lock:
            _wire.write_frame(result_fd, frame)

    try:
        handler = pickle.loads(handler_blob)
        if isinstance(handler, HandlerRef):
            handler = handler.build()
        if initializer_blob is not None:
            pickle.loads(initializer_blob)()
    except BaseException:  # noqa: BLE001 - reported to the parent, which gives up cleanly
        send((_wire.INIT_FAILED, traceback.format_exc(limit=20)))
        os._exit(_EXIT_INIT_FAILED)
    send((_wire.READY, os.getpid()))

    jobs = _JobQueue()
    threading.Thread(
        target=_receive_jobs,
        args=(job_conn.fileno(), jobs, slots, send),
        name="veo3dl-job-reader",
        daemon=True,
    ).start()
    extra = [
        threading.Thread(
            target=_run_slot, args=(handler, jobs, send), name=f"veo3dl-slot-{n}", daemon=True
        )
        for n in range(1, slots)
    ]
    for thread in extra:
        thread.start()
    _run_slot(handler, jobs, send)
    for thread in extra:
        thread.join()


def _run_slot(
    handler: Callable[[Any], Any],
    jobs: _JobQueue,
    send: Callable[[tuple[Any, ...]], None],
) -> None:
    """Run jobs one after another, reporting each start and end.

    ``DONE`` of one job and ``STARTED`` of the next travel in one message
    when the next job is already waiting: one message per job under load.
    """
    events: list[tuple[Any, ...]] = []
    job = jobs.take(block=True)
    while job is not _STOP:
        job_id, payload = job
        events.append((_wire.STARTED, job_id))
        send((_wire.EVENTS, events))
        events = [_run_job(handler, job_id, payload)]
        job = jobs.take(block=False)
        if job is None:
            send((_wire.EVENTS, events))
            events = []
            job = jobs.take(block=True)
    if events:
        send((_wire.EVENTS, events))


def _run_job(handler: Callable[[Any], Any], job_id: int, payload: bytes) -> tuple[Any, ...]:
    try:
        job = pickle.loads(payload)
    except BaseException as exc:  # noqa: BLE001 - one bad job must not end the worker
        error = HandlerError(
            f"the job could not be unpickled in the worker: {type(exc).__name__}: {exc}",
            exc_type=type(exc).__qualname__,
            remote_traceback=traceback.format_exc(limit=20),
        )
        return (_wire.DONE, job_id, False, _dump_error(error, ""))
    try:
        result = handler(job)
    except BaseException as exc:  # noqa: BLE001 - the handler's failure is the job's result
        return (_wire.DONE, job_id, False, _dump_error(exc, traceback.format_exc(limit=30)))
    try:
        return (_wire.DONE, job_id, True, pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL))
    except BaseException as exc:  # noqa: BLE001
        error = HandlerError(
            f"the handler's result ({type(result).__qualname__}) could not be pickled: {exc}",
            exc_type=type(exc).__qualname__,
        )
        return (_wire.DONE, job_id, False, _dump_error(error, ""))


def _dump_error(exc: BaseException, tb: str) -> bytes:
    """Pickle *exc* with its traceback text, or a :class:`HandlerError` standing in for it."""
    try:
        blob = pickle.dumps((exc, tb), protocol=pickle.HIGHEST_PROTOCOL)
        pickle.loads(blob)  # some exceptions pickle but cannot be rebuilt
    except BaseException:  # noqa: BLE001
        stand_in = HandlerError(
            f"{type(exc).__qualname__}: {exc}",
            exc_type=f"{type(exc).__module__}.{type(exc).__qualname__}",
            remote_traceback=tb,
        )
        blob = pickle.dumps((stand_in, tb), protocol=pickle.HIGHEST_PROTOCOL)
    return blob


class _JobQueue:
    """The jobs a worker holds and has not started; unstarted ones can be given back."""

    def __init__(self) -> None:
        self._items: collections.deque[Any] = collections.deque()
        self._cond = threading.Condition()

    def put(self, item: Any) -> None:
        with self._cond:
            self._items.append(item)
            self._cond.notify()

    def take(self, *, block: bool) -> Any:
        """The next job (or the stop marker); ``None`` when empty and not *block*."""
        with self._cond:
            while not self._items:
                if not block:
                    return None
                self._cond.wait()
            return self._items.popleft()

    def give_back(self, job_ids: set[int]) -> list[int]:
        """Remove the unstarted jobs among *job_ids*; return their ids."""
        with self._cond:
            kept: collections.deque[Any] = collections.deque()
            returned: list[int] = []
            for item in self._items:
                if item is not _STOP and item[0] in job_ids:
                    returned.append(item[0])
                else:
                    kept.append(item)
            self._items = kept
            return returned


def _receive_jobs(
    fd: int, jobs: _JobQueue, slots: int, send: Callable[[tuple[Any, ...]], None]
) -> None:
    """Move jobs from the pipe to the slots; exit the process when the parent is gone."""
    while True:
        message = _read_message(fd)
        if message is None:  # end of file: the pool is gone or terminating
            os._exit(_EXIT_PARENT_GONE)
        if message[0] == _wire.JOBS:
            for job in message[1]:
                jobs.put(job)
        elif message[0] == _wire.RECLAIM:
            returned = jobs.give_back(set(message[1]))
            send((_wire.EVENTS, [(_wire.RECLAIMED, job_id) for job_id in returned]))
        elif message[0] == _wire.STOP:
            for _ in range(slots):
                jobs.put(_STOP)


def _read_message(fd: int) -> tuple[Any, ...] | None:
    header = _read_exact(fd, 8)
    if header is None:
        return None
    body = _read_exact(fd, int.from_bytes(header, "big"))
    return None if body is None else pickle.loads(body)


def _read_exact(fd: int, size: int) -> bytes | None:
    chunks: list[bytes] = []
    remaining = size
    while remaining:
        try:
            chunk = os.read(fd, min(remaining, 1 << 20))
        except InterruptedError:
            continue
        except OSError:
            return None
        if not chunk:
            return None
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


# ------------------------------------------------------------ parent death


def _become_group_leader() -> None:
    try:
        os.setpgid(0, 0)
    except OSError:
        pass  # already a leader, or not permitted: timeouts then kill the worker alone


def _set_parent_death_signal() -> None:
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _watch_parent(parent_pid: int) -> None:
    """Exit the moment the pool's process ends, whoever our OS parent is."""
    pidfd_open = getattr(os, "pidfd_open", None)
    if pidfd_open is not None:
        try:
            pidfd = pidfd_open(parent_pid)
        except ProcessLookupError:
            os._exit(_EXIT_PARENT_GONE)
        except OSError:
            pidfd = None
        if pidfd is not None:
            select.select([pidfd], [], [])
            os._exit(_EXIT_PARENT_GONE)
    while _alive(parent_pid):
        time.sleep(0.25)
    os._exit(_EXIT_PARENT_GONE)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
