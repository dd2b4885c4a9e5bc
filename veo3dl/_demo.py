"""``veo3dl demo``: the whole job on the bundled emulator, with faults it recovers from.

A 42-item library (36 images, 6 videos) served on loopback, with three
faults a real run meets: the API answering 503 for one item (its signed URL
still works), a 429 with ``Retry-After``, and bearer tokens that expire
mid-run.  The demo syncs and downloads into a folder and prints what
happened; run it twice and the second run downloads nothing.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TextIO

import attrs

from veo3dl._cli_reports import counted
from veo3dl._client import FlowClient
from veo3dl._credentials import Credentials
from veo3dl._download_run import DownloadReport
from veo3dl._http import RetryPolicy
from veo3dl._logging import LogConfig
from veo3dl._progress import ProgressDisplay, human_bytes, human_duration
from veo3dl._service import ImageService
from veo3dl._store import ImageStore
from veo3dl._sync import SyncReport
from veo3dl.testing import Fault, FaultHandle, FlowEmulator

__all__ = ["DEMO_PROFILE", "run_demo"]

DEMO_PROFILE = "demo"
_SEED = 2025
_TOKEN_CALLS = 16
_RETRY_AFTER = 1


@attrs.frozen
class _Faults:
    api_down: FaultHandle
    throttled: FaultHandle
    fallback_name: str


def _inject(flow: FlowEmulator) -> _Faults:
    fallback = flow.items[3]
    return _Faults(
        api_down=flow.inject(Fault.status(503), endpoint="media", name=fallback.name, times=None),
        throttled=flow.inject(
            Fault.rate_limited(retry_after=_RETRY_AFTER), endpoint="media", name=flow.items[8].name
        ),
        fallback_name=fallback.name,
    )


def run_demo(
    folder: Path,
    *,
    workers: int,
    slots: int,
    display: ProgressDisplay,
    out: TextIO,
    log: tuple[str, str] | None = None,
) -> int:
    """Run the demo into *folder*; return the exit code (0: everything downloaded).

    *log* is the command's ``(level, format)``: the parent and the download
    workers then log that way, scrubbed of the emulator's secrets.
    """
    folder.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with FlowEmulator(
        items=42, videos=6, seed=_SEED, latency=0.02, token_calls=_TOKEN_CALLS
    ) as flow:
        faults = _inject(flow)
        # Cookie and key only, as from a browser: the bearer token is minted from the session.
        credentials = Credentials(cookie=flow.credentials.cookie, api_key=flow.credentials.api_key)
        worker_logging = None
        if log is not None:
            worker_logging = LogConfig(*log, flow.credentials.secrets())
            worker_logging.apply()
        with (
            FlowClient(
                credentials,
                labs_url=flow.labs_url,
                api_url=flow.api_url,
                retry=RetryPolicy(attempts=3, backoff=0.2),
            ) as client,
            ImageStore(folder / "catalogue.db") as store,
        ):
            service = ImageService(
                client,
                store,
                storage_root=folder / "media",
                workers=workers,
                slots_per_worker=slots,
                worker_logging=worker_logging,
            )
            display.restart()
            synced = service.sync_metadata(DEMO_PROFILE, on_page=display.sync_page)
            display.sync_done(synced.pages, synced.seen, synced.inserted)
            display.restart()
            report = service.download_images(
                DEMO_PROFILE, on_progress=display.download, retry_failed=True
            )
            display.download_done(report.downloaded, report.selected, report.bytes)
            downloaded = store.counts(DEMO_PROFILE).downloaded
        renewals = max(flow.requests("session") - 1, 0)
        elapsed = time.monotonic() - started
        _summary(
            out,
            folder=folder,
            synced=synced,
            report=report,
            faults=faults,
            renewals=renewals,
            elapsed=elapsed,
            downloaded=downloaded,
        )
    return 0 if report.ok and downloaded == 42 else 1


def _times(count: int) -> str:
    return {1: "once", 2: "twice"}.get(count, f"{count} times")


def _summary(
    out: TextIO,
    *,
    folder: Path,
    synced: SyncReport,
    report: DownloadReport,
    faults: _Faults,
    renewals: int,
    elapsed: float,
    downloaded: int,
) -> None:
    write = out.write
    write(
        "\nveo3dl demo: a Flow library of 42 items (36 images, 6 videos) on the bundled emulator\n"
    )
    write(
        f"  synced      {counted(synced.seen, 'item')} in {counted(synced.pages, 'page')} ({synced.inserted} new, {synced.updated} refreshed)\n"
    )
    already = report.skipped + report.adopted
    write(
        f"  downloaded  {counted(report.downloaded, 'item')}, {human_bytes(report.bytes)}, into {folder / 'media'}"
        f" ({already} already there)\n"
    )
    recovered = []
    if report.from_fallback:
        recovered.append(
            f"503 from the API for {counted(report.from_fallback, 'item')} -> fetched through "
            f"{'its signed URL' if report.from_fallback == 1 else 'their signed URLs'} instead"
        )
    if faults.throttled.fired:
        recovered.append(
            f"429 Too Many Requests (Retry-After {_RETRY_AFTER} s) -> every worker paused the API host, then went on"
        )
    if renewals:
        recovered.append(
            f"bearer token expired mid-run -> renewed {_times(renewals)}, "
            "each time once for all workers"
        )
    for index, line in enumerate(
        recovered or ["nothing to recover from: everything was already on disk"]
    ):
        write(f"  {'recovered' if index == 0 else '':10}  {line}\n")
    for failure in report.failures:
        write(f"  FAILED      {failure.name}: {failure.kind}: {failure.message}\n")
    rate = (
        f"{report.downloaded / elapsed:.1f} items/s, {human_bytes(report.bytes / elapsed)}/s"
        if elapsed
        else ""
    )
    write(f"  time        {human_duration(elapsed)} ({rate})\n")
    write(f"  on disk     {downloaded} of 42 items recorded in {folder / 'catalogue.db'}\n")
    write(
        f"  next        veo3dl status --db {folder / 'catalogue.db'} --profile {DEMO_PROFILE}\n"
        f"              veo3dl gallery --db {folder / 'catalogue.db'} --profile {DEMO_PROFILE}"
        f" --out {folder / 'gallery.html'}\n"
    )
