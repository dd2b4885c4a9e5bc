"""A DownloadPool with your own handler, inside a larger pipeline.

First the library is mirrored from the bundled emulator (sync, then
download).  Then a second stage checks every file on disk: a pool of worker
processes hashes the files, fed lazily through ``as_completed`` with a
bounded window, and the parent compares each hash with the catalogue.

It also shows crash containment: one job kills its worker on purpose.  The
pool re-runs it on a fresh worker up to ``max_attempts`` times, then fails
that job alone with ``WorkerCrashed``; every other job completes.

The handler and the job class are defined at module level, so that worker
processes (forkserver by default, or spawn) can import them; the work runs
under ``if __name__ == "__main__":``.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import attrs

from veo3dl import DownloadPool, FlowClient, ImageService, ImageStore, WorkerCrashed
from veo3dl.testing import FlowEmulator

CRASH = "crash-on-purpose"


@attrs.frozen
class HashJob:
    """One file to hash.  ``name`` labels the job in pool errors."""

    name: str
    path: str


def sha256_of(job: HashJob) -> tuple[str, int]:
    """Runs in a worker process: the file's SHA-256 and size."""
    if job.name == CRASH:
        os._exit(13)  # a worker dying mid-job, as a segfault in a C library would
    digest = hashlib.sha256()
    with open(job.path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest(), os.path.getsize(job.path)


def hash_jobs(store: ImageStore, root: Path, profile: str) -> Iterator[HashJob]:
    """Read lazily by ``as_completed``: only ``in_flight`` jobs exist at a time."""
    for item in store.items(profile):
        if item.local_path:
            yield HashJob(name=item.name, path=str(root / item.local_path))
    yield HashJob(name=CRASH, path="")


def alive(pid: int) -> bool:
    """Whether a process with this id exists."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def main() -> None:
    profile = "me"
    with tempfile.TemporaryDirectory() as tmp, FlowEmulator(items=30, videos=4, seed=3) as flow:
        root = Path(tmp) / "media"
        with (
            FlowClient(flow.credentials, labs_url=flow.labs_url, api_url=flow.api_url) as client,
            ImageStore(Path(tmp) / "flow.db") as store,
        ):
            service = ImageService(client, store, storage_root=root, workers=2)
            service.sync_metadata(profile)
            print(f"stage 1: downloaded {service.download_images(profile).downloaded} files")

            expected = {item.name: item.sha256 for item in store.items(profile)}
            verified = mismatched = hashed = 0
            with DownloadPool(workers=2, handler=sha256_of, max_attempts=2) as pool:
                jobs = hash_jobs(store, root, profile)
                for outcome in pool.as_completed(jobs, in_flight=8):
                    if isinstance(outcome.exception, WorkerCrashed):
                        error = outcome.exception
                        print(f"contained: {outcome.job.name} died {error.attempts} times")
                    elif outcome.ok:
                        digest, size = outcome.result
                        hashed += size
                        if digest == expected[outcome.job.name]:
                            verified += 1
                        else:
                            mismatched += 1
                status, pids = pool.status(), pool.worker_pids()
            # Leaving the block shut the pool down: the workers have exited.
            gone = not any(alive(pid) for pid in pids)
            print(f"verified {verified} files ({hashed:,} bytes), {mismatched} mismatched")
            print(
                f"pool: {status.completed} completed, {status.failed} failed, "
                f"{status.restarts} workers replaced; workers {pids} gone: {gone}"
            )


if __name__ == "__main__":
    main()
