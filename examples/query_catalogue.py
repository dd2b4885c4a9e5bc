"""Queries over the catalogue, after a sync and a download.

``ImageStore`` has helpers for the common questions (``counts``, ``by_date``,
``items``, ``pending``, ``get``).  For anything else, ``store.db`` is the
sqlite-utils ``Database``: plain SQL over the ``veo3_image_generations``
table, one row per ``(profile_id, name)``.

One item is removed from the emulated library before a second sync, to show
that a vanished item is marked ``remote_state = 'missing'`` and keeps its
file and ``local_path``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from veo3dl import FlowClient, ImageService, ImageStore
from veo3dl.testing import FlowEmulator

# ``model`` is NULL for user-uploaded images and for files that came through
# the signed URL (only the API's answer names the model).
PER_MODEL = """
    SELECT media_type, coalesce(model, '-') AS model, count(*) AS n, sum(size_bytes) AS bytes
    FROM veo3_image_generations WHERE profile_id = :profile
    GROUP BY media_type, model ORDER BY n DESC, model"""
BIGGEST = """
    SELECT local_path, size_bytes, mime_type FROM veo3_image_generations
    WHERE profile_id = :profile AND local_path IS NOT NULL
    ORDER BY size_bytes DESC LIMIT 3"""
VIDEOS = """
    SELECT created_at, aspect_ratio, prompt FROM veo3_image_generations
    WHERE profile_id = :profile AND media_type = 'VIDEO' ORDER BY created_at DESC"""


def main() -> None:
    profile = "me"
    with (
        tempfile.TemporaryDirectory() as tmp,
        FlowEmulator(items=42, videos=6, seed=5) as flow,
        FlowClient(flow.credentials, labs_url=flow.labs_url, api_url=flow.api_url) as client,
        ImageStore(Path(tmp) / "flow.db") as store,
    ):
        service = ImageService(client, store, storage_root=Path(tmp) / "media", workers=2)
        service.sync_metadata(profile)
        service.download_images(profile)
        gone = flow.remove_items([flow.items[-1].name])[0]
        service.sync_metadata(profile)

        counts = store.counts(profile)
        print(
            f"counts: {counts.items} items, {counts.downloaded} downloaded, "
            f"{counts.pending} pending, {counts.missing} missing, {counts.bytes:,} bytes"
        )
        for day in store.by_date(profile)[:3]:
            print(f"  {day.date}: {day.items} items, {day.downloaded} on disk")

        for item in store.items(profile, remote_state="missing"):
            print(f"missing: {item.media_key} still at {item.local_path}")
        row = store.get(profile, gone.name)  # one item by name, or None
        if row is not None:
            print(f"get: {row.remote_state}, {row.size_bytes} bytes, sha256 {row.sha256}")
        print(f"pending: {len(store.pending(profile))}")

        print("per model:")
        for r in store.db.query(PER_MODEL, {"profile": profile}):
            print(f"  {r['media_type']:5} {r['model']:32} {r['n']:3} {r['bytes']:>10,}")
        print("biggest files:")
        for r in store.db.query(BIGGEST, {"profile": profile}):
            print(f"  {r['size_bytes']:>10,}  {r['mime_type']:10} {r['local_path']}")
        videos = list(store.db.query(VIDEOS, {"profile": profile}))
        print(f"videos: {len(videos)}, newest: {videos[0]['prompt']!r}")


if __name__ == "__main__":
    main()
