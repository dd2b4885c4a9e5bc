"""The parent's handle on one worker process: its pipes, its jobs, its end.

:class:`WorkerHandle` starts the process, owns the parent's ends of the
worker's two pipes (non-blocking), buffers frames the pipe cannot take yet,
and kills the worker's whole process group.  It records which jobs the worker
holds; :mod:`veo3dl._supervisor` decides what happens to them.
"""

from __future__ import annotations

import os
import signal
import time
from concurrent.futures import Future
from multiprocessing.context import BaseContext
from typing import Any

from veo3dl import _wire
from veo3dl._worker import worker_main

__all__ = ["JobRecord", "WorkerHandle"]


class JobRecord:
    """One submitted job as the parent tracks it.

    ``attempts`` counts the charged starts (a start is not charged when
    several jobs died together, see :mod:`veo3dl._dispatch`); ``started`` is
    the monotonic time of the current start (``None`` while queued);
    ``dispatched`` when it was last sent to a worker.
    """

    __slots__ = (
        "attempts",
        "dispatched",
        "future",
        "id",
        "label",
        "payload",
        "reclaiming",
        "started",
        "suspect",
        "timed_out",
    )

    def __init__(self, job_id: int, payload: bytes, future: Future[Any], label: str | None) -> None:
        self.id = job_id
        self.payload = payload
        self.future = future
        self.label = label
        self.attempts = 0
        self.started: float | None = None
        self.dispatched = 0.0
        self.timed_out = False
        self.suspect = False
        self.reclaiming = False


class WorkerHandle:
    """A running worker process and the parent's ends of its pipes."""

    def __init__(
        self,
        context: BaseContext,
        number: int,
        *,
        handler_blob: bytes,
        initializer_blob: bytes | None,
        slots: int,
        inherited_fds: list[int],
    ) -> None:
        job_reader, job_writer = context.Pipe(duplex=False)
        result_reader, result_writer = context.Pipe(duplex=False)
        self.process = context.Process(  # type: ignore[attr-defined]
            target=worker_main,
            args=(
                job_reader,
                result_writer,
                os.getpid(),
                handler_blob,
                initializer_blob,
                slots,
                inherited_fds,
            ),
            name=f"veo3dl-worker-{number}",
            daemon=True,
        )
        try:
            self.process.start()
        finally:
            job_reader.close()
            result_writer.close()
        self.pid: int = self.process.pid
        try:  # the worker does the same; doing it here too closes the race
            os.setpgid(self.pid, self.pid)
        except OSError:
            pass
        self._job_writer = job_writer
        self._result_reader = result_reader
        self.job_fd = job_writer.fileno()
        self.result_fd = result_reader.fileno()
        os.set_blocking(self.job_fd, False)
        os.set_blocking(self.result_fd, False)
        self.sentinel: int = self.process.sentinel
        self.reader = _wire.FrameReader(self.result_fd)
        self.outbox = bytearray()
        self.held: dict[int, JobRecord] = {}
        self.ready = False
        self.started_any = False
        self.retiring = False
        self.dispatched = 0
        self.init_error: str | None = None
        self.kill_at: float | None = None
        self.killed_for_timeout = False
        self.result_open = True
        self.exited = False
        self.last_heard = time.monotonic()

    def fds(self) -> list[int]:
        """The parent's file descriptors for this worker (closed in forked siblings)."""
        return [self.job_fd, self.result_fd]

    @property
    def running(self) -> int:
        """Jobs this worker has started and not finished."""
        return sum(1 for record in self.held.values() if record.started is not None)

    def send(self, message: tuple[Any, ...]) -> None:
        """Queue *message* for the worker and write what the pipe takes now."""
        self.outbox += _wire.encode(message)
        self.flush()

    def flush(self) -> bool:
        """Write buffered frames without blocking; True when everything went."""
        while self.outbox:
            try:
                written = os.write(self.job_fd, self.outbox)
            except BlockingIOError:
                return False
            except InterruptedError:
                continue
            except OSError:  # the worker is gone; its sentinel will say so
                self.outbox.clear()
                return True
            del self.outbox[:written]
        return True

    def signal_group(self, signum: int) -> None:
        """Send *signum* to the worker's process group (or the worker alone)."""
        try:
            os.killpg(self.pid, signum)
        except OSError:
            try:
                os.kill(self.pid, signum)
            except OSError:
                pass

    def kill(self) -> None:
        """SIGKILL the worker and everything it started."""
        self.signal_group(signal.SIGKILL)

    def begin_kill(self, grace: float) -> None:
        """SIGTERM now, SIGKILL at :attr:`kill_at` if it is still there."""
        if self.kill_at is None:
            self.signal_group(signal.SIGTERM)
            self.kill_at = time.monotonic() + grace

    def reap(self, timeout: float = 2.0) -> int | None:
        """Wait (at most *timeout*) for the exited process; its exit code (negative: a signal).

        The sentinel becomes readable when the process closes its files, a
        moment before the kernel lets it be waited for: hence the short wait.
        """
        self.process.join(timeout=timeout)
        code = self.process.exitcode
        return code if isinstance(code, int) else None

    def close(self) -> None:
        """Close the parent's ends of the pipes and release the process handle."""
        self._job_writer.close()
        self._result_reader.close()
        self.exited = True
        try:
            self.process.close()
        except ValueError:
            pass  # still running (a kill that did not land yet): dropped with the handle
