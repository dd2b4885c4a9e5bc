"""ImageService: the one place where the client, the catalogue and the pool meet.

It is the only writer of the catalogue.  ``sync_metadata`` lists the library
into the store; ``download_images`` turns the store's pending items into
jobs for the pool and the pool's results into ``local_path`` updates.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from veo3dl._files import DEFAULT_TEMPLATE, validate_template
from veo3dl._pool import DownloadPool
from veo3dl._store import ImageStore
from veo3dl._sync import SyncProgress, SyncReport, run_sync
from veo3dl._transport import Transport
from veo3dl.exceptions import ConfigError

__all__ = ["ImageService"]


def _check_profile(profile_id: object) -> str:
    if not isinstance(profile_id, str) or not profile_id.strip():
        raise ConfigError(f"profile_id must be a non-empty string, got {profile_id!r}")
    return profile_id.strip()


class ImageService:
    """Sync a Flow library into an :class:`~veo3dl.ImageStore` and download it.

    *client* is a :class:`~veo3dl.FlowClient` (or another transport with the
    same methods); *store* the catalogue.  *pool* is optional: sync needs
    none, and :meth:`download_images` makes one for the call when none was
    given (*workers* processes of *slots_per_worker* download threads).
    Files go under *storage_root*, at *path_template* (default
    ``{date}/{media_key}.{ext}``, the date being the item's UTC creation day).
    """

    def __init__(
        self,
        client: Transport,
        store: ImageStore,
        pool: DownloadPool | None = None,
        storage_root: str | Path = "veo3dl-media",
        *,
        path_template: str = DEFAULT_TEMPLATE,
        workers: int = 4,
        slots_per_worker: int = 4,
    ) -> None:
        if not isinstance(store, ImageStore):
            raise ConfigError("store must be a veo3dl.ImageStore")
        validate_template(path_template)
        if workers < 1 or slots_per_worker < 1:
            raise ConfigError("workers and slots_per_worker must be at least 1")
        self.client = client
        self.store = store
        self.pool = pool
        self.storage_root = Path(storage_root)
        self.path_template = path_template
        self.workers = workers
        self.slots_per_worker = slots_per_worker

    def __repr__(self) -> str:
        return f"ImageService(storage_root={str(self.storage_root)!r}, store={self.store!r})"

    def sync_metadata(
        self,
        profile_id: str,
        *,
        incremental: bool = False,
        on_page: Callable[[SyncProgress], object] | None = None,
    ) -> SyncReport:
        """List the whole library into the store for *profile_id*.

        Items are upserted by ``(profile_id, name)``: metadata and signed URLs
        refreshed, download fields never touched.  After a complete listing,
        stored items the listing did not show are marked
        ``remote_state='missing'`` (never deleted).  With *incremental*, the
        listing (newest first) stops at the first page whose items are all
        stored already, and nothing is marked missing.  *on_page* is called
        after each page is stored.
        """
        profile = _check_profile(profile_id)
        return run_sync(
            self.client.iter_pages(), self.store, profile, incremental=incremental, on_page=on_page
        )
