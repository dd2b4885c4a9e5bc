"""The messages between the pool's parent and its workers, and their framing.

Each worker has two pipes of its own: jobs go down one, events come up the
other.  A message is a pickled tuple in a frame of an 8-byte big-endian
length and the bytes.  The parent reads frames from non-blocking pipes with
:class:`FrameReader`, so a worker that stalls or dies half-way through a
message can never block it; the half message is simply dropped.

Parent → worker::

    (JOBS, [(job_id, payload), ...])    payload: the pickled job
    (RECLAIM, [job_id, ...])            give these back if not started yet
    (STOP,)                             finish what you hold, then exit

Worker → parent::

    (READY, pid)                        the initializer ran; jobs welcome
    (INIT_FAILED, text)                 the handler or initializer failed to load
    (EVENTS, [event, ...])              in order, where an event is
        (STARTED, job_id)               the handler was called
        (DONE, job_id, ok, payload)     payload: pickled result (ok) or error
        (RECLAIMED, job_id)             given back unstarted
"""

from __future__ import annotations

import errno
import os
import pickle
import struct
from typing import Any

__all__ = [
    "DONE",
    "EVENTS",
    "INIT_FAILED",
    "JOBS",
    "READY",
    "RECLAIM",
    "RECLAIMED",
    "STARTED",
    "STOP",
    "FrameReader",
    "encode",
    "write_frame",
]

JOBS, STOP, RECLAIM = "jobs", "stop", "reclaim"
READY, INIT_FAILED, EVENTS = "ready", "init_failed", "events"
STARTED, DONE, RECLAIMED = 0, 1, 2

_HEADER = struct.Struct("!Q")
_READ_SIZE = 1 << 20


def encode(message: tuple[Any, ...]) -> bytes:
    """A message as one frame, ready to write."""
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return _HEADER.pack(len(data)) + data


def write_frame(fd: int, frame: bytes) -> None:
    """Write all of *frame* to a blocking *fd* (the worker side)."""
    view = memoryview(frame)
    while view:
        try:
            written = os.write(fd, view)
        except InterruptedError:
            continue
        view = view[written:]


class FrameReader:
    """Reassembles frames from a non-blocking pipe (the parent side)."""

    __slots__ = ("_buffer", "_fd", "eof")

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._buffer = bytearray()
        self.eof = False

    def read_available(self) -> list[tuple[Any, ...]]:
        """Read what the pipe holds now and return the complete messages in it.

        Sets :attr:`eof` when the writing end is closed (the worker is gone).
        Never blocks.
        """
        while True:
            try:
                chunk = os.read(self._fd, _READ_SIZE)
            except BlockingIOError:
                break
            except InterruptedError:
                continue
            except OSError as error:
                if error.errno in (errno.EBADF, errno.EIO):
                    self.eof = True
                    break
                raise
            if not chunk:
                self.eof = True
                break
            self._buffer += chunk
            if len(chunk) < _READ_SIZE:
                break
        return self._messages()

    def _messages(self) -> list[tuple[Any, ...]]:
        messages: list[tuple[Any, ...]] = []
        buffer = self._buffer
        start = 0
        with memoryview(buffer) as view:
            while len(buffer) - start >= _HEADER.size:
                (length,) = _HEADER.unpack_from(buffer, start)
                end = start + _HEADER.size + length
                if len(buffer) < end:
                    break
                with view[start + _HEADER.size : end] as body:
                    messages.append(pickle.loads(body))
                start = end
        if start:
            del buffer[:start]
        return messages

    @property
    def partial(self) -> int:
        """Bytes of an incomplete message held (dropped if the worker died)."""
        return len(self._buffer)
