"""Mirror a whole Flow library into a folder: sync the catalogue, then download.

The three public pieces, wired together by hand:

* ``FlowClient`` talks to the service (here the bundled emulator; for your
  own library, ``FlowClient(Credentials.from_env())``);
* ``ImageStore`` is the SQLite catalogue;
* ``ImageService`` lists the library into the catalogue (``sync_metadata``)
  and downloads what is not on disk yet (``download_images``) through a pool
  of worker processes.

A second ``download_images`` call makes no request: every file is on disk
with its recorded size.  The work runs under ``if __name__ == "__main__":``
because the pool's worker processes import this module.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from veo3dl import Credentials, FlowClient, ImageService, ImageStore
from veo3dl.testing import FlowEmulator


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp, FlowEmulator(items=42, videos=6, seed=7) as flow:
        folder = Path(tmp)
        # What you copy from the browser: the session cookie and the API key.
        # The bearer token is minted from the cookie, and renewed when it expires.
        credentials = Credentials(cookie=flow.credentials.cookie, api_key=flow.credentials.api_key)
        with (
            FlowClient(credentials, labs_url=flow.labs_url, api_url=flow.api_url) as client,
            ImageStore(folder / "flow.db") as store,
        ):
            service = ImageService(
                client, store, storage_root=folder / "media", workers=2, slots_per_worker=4
            )

            synced = service.sync_metadata("me")
            print(
                f"sync: {synced.seen} items in {synced.pages} pages, {synced.inserted} new, "
                f"{synced.updated} refreshed, {synced.marked_missing} missing "
                f"(stopped: {synced.stop}, complete: {synced.complete})"
            )

            report = service.download_images("me")
            print(
                f"download: {report.downloaded} of {report.selected} downloaded, "
                f"{report.bytes:,} bytes, {report.from_fallback} through the signed URL, "
                f"{report.skipped} already on disk, {report.failed} failed "
                f"in {report.duration:.1f} s"
            )
            for failure in report.failures:
                print(f"  failed {failure.name}: {failure.kind}: {failure.message}")

            again = service.download_images("me")
            print(f"second run: {again.downloaded} downloaded, {again.skipped} already on disk")

        files = sorted(p for p in (folder / "media").rglob("*") if p.is_file())
        print(f"{len(files)} files on disk, e.g. {files[0].relative_to(folder / 'media')}")


if __name__ == "__main__":
    main()
