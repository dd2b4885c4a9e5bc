"""Completing the pool's futures on a thread of their own.

``Future.set_result`` runs the future's done-callbacks, which are user code:
they may be slow, raise anything (``sys.exit()`` included), or call back into
the pool.  Running them on the supervisor would let them stall crash
detection and timeouts; here they cannot.
"""

from __future__ import annotations

import queue
import threading
import traceback
from concurrent.futures import Future
from typing import Any

from veo3dl._logging import get_logger

__all__ = ["Completer", "RemoteTraceback"]

_log = get_logger(__name__)
Completion = tuple["Future[Any]", bool, Any]


class RemoteTraceback(Exception):
    """The worker-side traceback, chained as ``__cause__`` of a handler's exception."""

    def __init__(self, text: str) -> None:
        super().__init__(text)

    def __str__(self) -> str:
        return f'\n"""\n{self.args[0]}"""'


class Completer:
    """Completes futures in batches on its own thread."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[list[Completion] | None] = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._run, name="veo3dl-pool-completer", daemon=True)
        self.thread.start()

    def put(self, batch: list[Completion]) -> None:
        """Complete these futures soon."""
        if batch:
            self._queue.put(batch)

    def _run(self) -> None:
        while (batch := self._queue.get()) is not None:
            for future, ok, value in batch:
                if future.done():
                    continue
                try:
                    if ok:
                        future.set_result(value)
                    else:
                        future.set_exception(value)
                except BaseException:  # noqa: BLE001 - a callback's sys.exit() must not end this thread
                    _log.warning("future_callback_failed", error=traceback.format_exc(limit=5))

    def close(self, timeout: float) -> None:
        """Finish the queued batches and stop (waiting at most *timeout*, never on itself)."""
        self._queue.put(None)
        if threading.current_thread() is not self.thread:
            self.thread.join(timeout)
