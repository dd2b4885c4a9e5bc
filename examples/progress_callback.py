"""Progress callbacks: ``on_page`` for a sync, ``on_progress`` for a download.

The library never prints.  It calls your function instead: ``on_page`` with
a ``SyncProgress`` after each listing page, ``on_progress`` with a
``DownloadProgress`` after each item.  Both run in the calling process, on
the calling thread.  Here they draw a small text progress line and collect
statistics.

One item is made to fail on purpose (the API says 404, the signed URL
answers an HTML page), so the callback also sees a failure.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from veo3dl import (
    DownloadProgress,
    FlowClient,
    ImageService,
    ImageStore,
    RetryPolicy,
    SyncProgress,
)
from veo3dl.testing import Fault, FlowEmulator


class Stats:
    """Collects what the callbacks report and draws a progress line."""

    def __init__(self) -> None:
        self.pages: list[int] = []
        self.failed: list[str] = []
        self.last_bytes = 0
        self.biggest = (0, "")

    def on_page(self, progress: SyncProgress) -> None:
        self.pages.append(progress.seen)
        print(f"sync page {progress.page}: {progress.seen} items listed so far")

    def on_progress(self, progress: DownloadProgress) -> None:
        size = progress.bytes - self.last_bytes  # the bytes this item added
        self.last_bytes = progress.bytes
        if not progress.ok:
            self.failed.append(progress.name)
        self.biggest = max(self.biggest, (size, progress.name))
        if progress.done % 10 == 0 or progress.done == progress.total:
            width = 20
            filled = width * progress.done // max(progress.total, 1)
            bar = "#" * filled + "." * (width - filled)
            print(
                f"[{bar}] {progress.done}/{progress.total} items, "
                f"{progress.bytes / 1e6:.1f} MB, {progress.failed} failed"
            )


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp, FlowEmulator(items=40, videos=4, seed=11) as flow:
        broken = next(item.name for item in flow.items if item.fife_in_listing)
        flow.inject(Fault.status(404), endpoint="media", name=broken, times=None)
        flow.inject(Fault.html(), endpoint="fife", name=broken, times=None)
        fast = RetryPolicy(attempts=2, backoff=0.05)
        with (
            FlowClient(
                flow.credentials, labs_url=flow.labs_url, api_url=flow.api_url, retry=fast
            ) as client,
            ImageStore(Path(tmp) / "flow.db") as store,
        ):
            service = ImageService(client, store, storage_root=Path(tmp) / "media", workers=2)
            stats = Stats()
            service.sync_metadata("me", on_page=stats.on_page)
            report = service.download_images("me", on_progress=stats.on_progress)

        size, name = stats.biggest
        print(f"pages: {len(stats.pages)}, biggest file: {name[:12]}... ({size:,} bytes)")
        print(f"failed via callback: {stats.failed == [broken]}; report says {report.failed}")
        for failure in report.failures:
            print(f"  {failure.kind}: {failure.message.partition(': ')[2]}")


if __name__ == "__main__":
    main()
