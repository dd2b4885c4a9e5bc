"""A self-pipe that wakes the supervisor's ``select`` from any thread."""

from __future__ import annotations

import os
import threading

__all__ = ["WakePipe"]


class WakePipe:
    """One byte in a pipe means "look again"; repeated wake-ups cost one write.

    Thread-safe.  After :meth:`close` a wake-up is a no-op: the pipe's fd
    numbers may by then belong to another file.
    """

    def __init__(self) -> None:
        self._read_fd, self._write_fd = os.pipe()
        os.set_blocking(self._read_fd, False)
        os.set_blocking(self._write_fd, False)
        self._lock = threading.Lock()
        self._pending = False
        self._closed = False

    def fileno(self) -> int:
        """The end to wait on for reading."""
        return self._read_fd

    def fds(self) -> list[int]:
        """Both ends (a forked worker must close them)."""
        return [self._read_fd, self._write_fd]

    def wake(self) -> None:
        """Make the waiting side return from its ``select``."""
        with self._lock:
            if self._pending or self._closed:
                return
            self._pending = True
            try:
                os.write(self._write_fd, b"\0")
            except OSError:
                pass  # full: the reader is awake anyway

    def drain(self) -> None:
        """Consume the wake-ups (on the waiting side)."""
        # Empty the pipe *before* clearing the flag: cleared first, a wake-up
        # written in between would be read here and the flag left set, and
        # every later wake() would skip its write.
        try:
            while os.read(self._read_fd, 4096):
                pass
        except BlockingIOError:
            pass
        with self._lock:
            self._pending = False

    def close(self) -> None:
        """Close both ends; later wake-ups do nothing."""
        with self._lock:
            if not self._closed:
                self._closed = True
                os.close(self._read_fd)
                os.close(self._write_fd)
