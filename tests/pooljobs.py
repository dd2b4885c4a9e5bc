"""Handlers and jobs the pool tests run inside worker processes.

They live in an importable module (not in the test files) so that every
start method can unpickle them.  Jobs that must be "busy" block on a file
appearing, never on a timer; tests release them by creating the file.
"""

from __future__ import annotations

import ctypes
import faulthandler
import os
import threading
import time
from pathlib import Path
from typing import Any

import attrs

_DEADLINE = 60.0  # a blocked job gives up after this, so no test can hang on it


@attrs.frozen
class Block:
    """Write ``started-<key>-<pid>-<n>`` into *folder*, then wait for ``release-<key>``."""

    folder: str
    key: str
    result: Any = None

    @property
    def name(self) -> str:
        return f"block-{self.key}"


@attrs.frozen
class Crash:
    """Die with ``os._exit(code)`` (``code=None``: segfault) while *attempts_left* files remain."""

    folder: str
    key: str
    code: int | None = 13
    times: int = 1_000_000

    @property
    def name(self) -> str:
        return f"crash-{self.key}"


def _wait_for(path: Path) -> None:
    deadline = time.monotonic() + _DEADLINE
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} never appeared")
        time.sleep(0.005)


def _count(folder: str, prefix: str) -> int:
    return sum(1 for p in Path(folder).iterdir() if p.name.startswith(prefix))


def handle(job: Any) -> Any:
    """The test handler: dispatches on the job's type."""
    if isinstance(job, Block):
        n = _count(job.folder, f"started-{job.key}-")
        Path(job.folder, f"started-{job.key}-{os.getpid()}-{n}").touch()
        _wait_for(Path(job.folder, f"release-{job.key}"))
        return job.result if job.result is not None else (job.key, os.getpid())
    if isinstance(job, Crash):
        tries = _count(job.folder, f"crash-{job.key}-")
        Path(job.folder, f"crash-{job.key}-{tries}").touch()
        if tries < job.times:
            if job.code is None:
                faulthandler.disable()  # the crash is the point; keep stderr quiet
                ctypes.string_at(0)  # segfault
            os._exit(job.code)
        return ("survived", job.key)
    if isinstance(job, tuple) and job and job[0] == "raise":
        raise ValueError(job[1])
    if isinstance(job, tuple) and job and job[0] == "big":
        return b"x" * job[1]
    if isinstance(job, tuple) and job and job[0] == "pid":
        return os.getpid()
    if job == "unpicklable-result":
        return threading.Lock()
    if job == "unpicklable-exception":
        raise LockError(threading.Lock())
    if job == "unrebuildable-exception":
        raise TwoArgError("a", "b")
    return job


def square(x: int) -> int:
    """A tiny job."""
    return x * x


def failing_initializer() -> None:
    """An initializer that always fails."""
    raise RuntimeError("initializer exploded on purpose")


class LockError(Exception):
    """Carries a lock: cannot be pickled."""

    def __init__(self, lock: Any) -> None:
        super().__init__("holding a lock")
        self.lock = lock


class TwoArgError(Exception):
    """Pickles, but cannot be rebuilt (two required arguments, one in args)."""

    def __init__(self, a: str, b: str) -> None:
        super().__init__(f"{a}+{b}")
