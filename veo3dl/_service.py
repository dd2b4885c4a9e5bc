"""ImageService: the one place where the client, the catalogue and the pool meet.

It is the only writer of the catalogue.  ``sync_metadata`` lists the library
into the store; ``download_images`` turns the store's pending items into
jobs for the pool and the pool's results into ``local_path`` updates.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from veo3dl._access import FlowAccess
from veo3dl._atomic import clean_stale_parts
from veo3dl._client import FlowClient
from veo3dl._coordination import Coordinator
from veo3dl._download_run import DownloadProgress, DownloadReport, DownloadRun
from veo3dl._jobs import TransportSpec
from veo3dl._leases import Leases
from veo3dl._logging import LogConfig, get_logger
from veo3dl._paths import DEFAULT_TEMPLATE, validate_template
from veo3dl._placement import recorded_relative
from veo3dl._pool import DownloadPool
from veo3dl._store import ImageStore
from veo3dl._sync import SyncProgress, SyncReport, run_sync
from veo3dl._transport import Transport
from veo3dl.exceptions import ConfigError, StorageError

_log = get_logger(__name__)

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
    While downloading, items are leased in the catalogue for *lease_seconds*
    (renewed as long as the run lives), so that two runs on one catalogue
    fetch each item once.

    *worker_logging*, a :class:`LogConfig`, configures logging in each worker
    of the pool the service makes, as the ``veo3dl`` command does, whatever
    the start method.  Without it workers leave logging alone: silent under
    forkserver and spawn, the parent's setup under fork.  A pool passed in
    brings its own ``initializer`` instead.
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
        job_timeout: float | None = None,
        lease_seconds: float = 120.0,
        worker_logging: LogConfig | None = None,
    ) -> None:
        if not isinstance(store, ImageStore):
            raise ConfigError("store must be a veo3dl.ImageStore")
        validate_template(path_template)
        if "{ext}" in path_template[: -len("{ext}")]:
            raise ConfigError(
                f"bad file name template {path_template!r}: {{ext}} may only end it",
                hint="the extension is known only once the bytes arrive",
            )
        if workers < 1 or slots_per_worker < 1:
            raise ConfigError("workers and slots_per_worker must be at least 1")
        if worker_logging is not None and not isinstance(worker_logging, LogConfig):
            raise ConfigError("worker_logging must be a LogConfig")
        if worker_logging is not None and pool is not None:
            # The pool's workers are started already: their initializer was the caller's choice.
            raise ConfigError(
                "worker_logging applies to the pool the service makes, not to one passed in",
                hint="pass initializer=LogConfig(...) to your DownloadPool instead",
            )
        self.client = client
        self.store = store
        self.pool = pool
        self.storage_root = Path(storage_root)
        self.path_template = path_template
        self.workers = workers
        self.slots_per_worker = slots_per_worker
        self.job_timeout = job_timeout
        self.lease_seconds = lease_seconds
        self.worker_logging = worker_logging

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
        after each page is listed (pages are stored in batches; see
        :class:`~veo3dl.SyncProgress` for how many are).
        """
        profile = _check_profile(profile_id)
        return run_sync(
            self.client.iter_pages(), self.store, profile, incremental=incremental, on_page=on_page
        )

    def download_images(
        self,
        profile_id: str,
        names: Sequence[str] | None = None,
        *,
        on_progress: Callable[[DownloadProgress], object] | None = None,
        retry_failed: bool = False,
    ) -> DownloadReport:
        """Download every stored item of *profile_id* (or just *names*) not yet on disk.

        Items whose recorded file is present with its recorded size are
        skipped without a request.  The rest go through the pool; each file is
        verified, written atomically under ``storage_root`` and recorded
        (``local_path``, ``sha256``, ``size_bytes``, ``mime_type``,
        ``downloaded_at``) — or its ``attempts`` and ``last_error`` are (a
        failure never forgets a file recorded before).  No two items share a
        file (see docs/store.md).  *on_progress* is called after each item.
        Items gone from Flow (``remote_state='missing'``) are left alone, and
        so are items that failed before (``last_error`` set) unless
        *retry_failed*.  Raises :class:`StorageError` when ``storage_root``
        is missing or empty while the catalogue records files of the
        profile under it (a disk not mounted, a wrong folder).
        """
        profile = _check_profile(profile_id)
        root = self._prepared_root(profile)
        items = self.store.items(profile, names=names, remote_state="present")
        run = DownloadRun(
            self.store,
            profile,
            storage_root=root,
            template=self.path_template,
            access=None,
            on_progress=on_progress,
            retry_failed=retry_failed,
        )
        if names is not None:
            for name in sorted(set(names) - {item.name for item in items}):
                run.not_found(name)
        with self._access() as access:
            run.access = access
            run.plan(items)
            if run.jobs:
                with Leases(self.store, profile, seconds=self.lease_seconds) as leases:
                    run.keep_only(leases.claim(job.name for job in run.jobs))
                    if run.jobs:
                        with self._pool() as pool:
                            run.run(pool)
        clean_stale_parts(root)  # what killed workers left
        report = run.report(selected=len(items))
        _log.info(
            "download_finished",
            profile_id=profile,
            downloaded=report.downloaded,
            skipped=report.skipped,
            failed=report.failed,
            seconds=round(report.duration, 3),
        )
        return report

    def _prepared_root(self, profile: str) -> Path:
        """The storage root, resolved (created when missing and nothing is recorded under it).

        A root that is missing or empty while the catalogue records files of
        *profile* under it is most likely a disk not mounted or a wrong
        folder: refused, rather than downloading everything again there.
        """
        root = self.storage_root
        try:
            empty = not root.exists() or (root.is_dir() and next(root.iterdir(), None) is None)
        except OSError as error:
            raise StorageError(f"cannot read the storage folder: {error}", path=str(root)) from None
        if empty:
            expected = self._recorded_under(profile, root)
            if expected:
                state = "does not exist" if not root.exists() else "is empty"
                raise StorageError(
                    f"the storage folder {root} {state}, but the catalogue records "
                    f"{expected} downloaded file{'s' if expected != 1 else ''} of profile "
                    f"{profile!r} under it",
                    path=str(root),
                    hint="is the disk mounted? pass the right --dest / storage_root; if the files "
                    "are really gone, create the folder with any file in it (e.g. .keep) to "
                    "download them again",
                )
        try:
            root.mkdir(parents=True, exist_ok=True)
            root = root.resolve()
        except OSError as error:
            raise StorageError(
                f"cannot create the storage folder: {error}", path=str(root)
            ) from None
        clean_stale_parts(root)
        return root

    def _recorded_under(self, profile: str, root: Path) -> int:
        """How many files the catalogue records for *profile* under *root*."""
        absolute = Path(os.path.abspath(root))
        return sum(
            recorded_relative(item.local_path, absolute) is not None
            for item in self.store.items(profile)
        )

    @contextlib.contextmanager
    def _access(self) -> Iterator[TransportSpec | None]:
        """The access spec for jobs, with a coordinator for the call when the client allows."""
        client = self.client
        if isinstance(client, FlowClient) and not client.credentials.api_key:
            raise ConfigError(
                "downloading needs the API key", hint="set VEO3DL_API_KEY (see the README)"
            )
        if not isinstance(client, FlowClient):
            spec = getattr(client, "spec", None)
            yield spec() if callable(spec) else None
            return
        with Coordinator(client.token_source) as coordinator:
            yield FlowAccess.of(client, coordinator.address)

    @contextlib.contextmanager
    def _pool(self) -> Iterator[DownloadPool]:
        if self.pool is not None:
            yield self.pool
            return
        pool = DownloadPool(
            self.workers,
            slots_per_worker=self.slots_per_worker,
            job_timeout=self.job_timeout,
            initializer=self.worker_logging,
        )
        try:
            yield pool
        except BaseException:
            pool.terminate()
            raise
        pool.shutdown(wait=True)
