"""Tiny handlers the benchmarks run in worker processes (importable by every start method)."""

from __future__ import annotations

import os
import time
from pathlib import Path


def noop(job: object) -> object:
    """Return the job: the cheapest possible work."""
    return job


def mark_and_wait(job: tuple[str, str]) -> float:
    """Write the start time (and pid) into a marker file, then wait for a release file."""
    folder, key = job
    started = time.time()
    count = len(list(Path(folder).glob(f"start-{key}-*")))
    Path(folder, f"start-{key}-{count}").write_text(f"{started} {os.getpid()}")
    release = Path(folder, f"release-{key}")
    deadline = time.monotonic() + 60
    while not release.exists() and time.monotonic() < deadline:
        time.sleep(0.001)
    return started
