"""One ``download_images`` call: choose the items, run them through the pool, record results.

The parent does all the deciding and all the writing:

* an item whose recorded file is on disk with the recorded size is skipped
  without a request;
* an item with no record but a whole file at its destination (a worker
  finished it, then the parent was killed before recording) is adopted
  after checking the file, again without a request;
* everything else becomes a :class:`~veo3dl.DownloadJob` with its
  destination computed here, and the pool's results are written to the
  catalogue in batched transactions as they arrive.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath

import attrs

from veo3dl._atomic import file_matches, sha256_file
from veo3dl._jobs import DownloadJob, DownloadResult, TransportSpec
from veo3dl._logging import get_logger
from veo3dl._paths import render_destination, resolve_inside
from veo3dl._pool import DownloadPool, JobOutcome
from veo3dl._records import DownloadRecord, StoredItem
from veo3dl._sniff import MediaKind, sniff, verify_complete
from veo3dl._store import ImageStore, iso_utc
from veo3dl.exceptions import IntegrityError, Veo3dlError

__all__ = ["DownloadFailure", "DownloadProgress", "DownloadReport", "DownloadRun"]

_log = get_logger(__name__)
_FLUSH_RESULTS = 50
_FLUSH_SECONDS = 0.5
_EXTENSIONS = sorted({kind.extension for kind in MediaKind})


@attrs.frozen
class DownloadProgress:
    """Handed to ``on_progress`` after each item the pool finished: how far the call is.

    ``done`` and ``failed`` count the pool's results out of ``total`` jobs
    (items skipped or refused before the pool are not among them).
    """

    done: int
    total: int
    bytes: int
    failed: int
    name: str
    ok: bool


@attrs.frozen
class DownloadFailure:
    """One item that could not be downloaded, and why."""

    name: str
    kind: str
    message: str


@attrs.frozen
class DownloadReport:
    """What a ``download_images`` call did.

    ``downloaded`` items were fetched now (``from_fallback`` of them through
    the signed URL after the API failed); ``skipped`` were on disk already;
    ``adopted`` were found whole on disk but not recorded (a run killed after
    writing them); ``not_retried`` failed in an earlier call and were left
    alone (``retry_failed=False``); ``busy_elsewhere`` were being downloaded
    by another run on the same catalogue; ``failures`` lists this call's
    failures.
    """

    profile_id: str
    selected: int
    downloaded: int
    skipped: int
    adopted: int
    bytes: int
    from_fallback: int
    failures: tuple[DownloadFailure, ...]
    duration: float
    not_retried: int = 0
    busy_elsewhere: int = 0

    @property
    def failed(self) -> int:
        """How many items failed."""
        return len(self.failures)

    @property
    def ok(self) -> bool:
        """True when nothing failed."""
        return not self.failures


class DownloadRun:
    """The state of one download call (see the module docstring)."""

    def __init__(
        self,
        store: ImageStore,
        profile_id: str,
        *,
        storage_root: Path,
        template: str,
        access: TransportSpec | None,
        on_progress: Callable[[DownloadProgress], object] | None,
        retry_failed: bool = True,
    ) -> None:
        self.retry_failed = retry_failed
        self._results = 0
        self._failed_in_run = 0
        self.not_retried = 0
        self.busy_elsewhere = 0
        self.store = store
        self.profile_id = profile_id
        self.root = storage_root
        self.template = template
        self.access = access
        self.on_progress = on_progress
        self.started = time.monotonic()
        self.skipped = self.adopted = self.downloaded = self.fallback = self.bytes = 0
        self.failures: list[DownloadFailure] = []
        self.jobs: list[DownloadJob] = []
        self._pending: list[DownloadRecord] = []
        self._flushed_at = time.monotonic()
        self._cleared: set[str] = set()

    # ------------------------------------------------------------ planning

    def plan(self, items: Sequence[StoredItem]) -> None:
        """Sort *items* into skipped, adopted, failed and jobs."""
        for item in items:
            try:
                if self._already_on_disk(item):
                    self.skipped += 1
                    continue
                if item.last_error and not item.local_path and not self.retry_failed:
                    self.not_retried += 1
                    continue
                destination = self._destination(item)
                if self._adopt(item, destination):
                    continue
            except Veo3dlError as error:
                self._fail(item.name, error)
                continue
            self.jobs.append(
                DownloadJob(
                    name=item.name,
                    destination=str(destination),
                    storage_root=str(self.root),
                    media_type=item.media_type or "IMAGE",
                    media_key=item.media_key,
                    fife_url=item.fife_url,
                    access=self.access,
                )
            )
        self._flush()

    def _recorded_path(self, item: StoredItem) -> Path | None:
        if not item.local_path:
            return None
        path = Path(item.local_path)
        return path if path.is_absolute() else self.root / PurePosixPath(item.local_path)

    def _already_on_disk(self, item: StoredItem) -> bool:
        path = self._recorded_path(item)
        if path is None:
            return False
        if item.size_bytes is not None:
            if file_matches(path, item.size_bytes):
                return True
        elif path.is_file():  # a row adopted from the seed app: measure it once
            self._pending.append(
                DownloadRecord(
                    name=item.name, ok=True, attempts=0, local_path=item.local_path,
                    size_bytes=path.stat().st_size, sha256=sha256_file(path), downloaded_at=iso_utc(),
                )
            )  # fmt: skip
            return True
        # Recorded, but the file is gone or wrong: fetch again; clear the record if that fails.
        self._cleared.add(item.name)
        return False

    def _destination(self, item: StoredItem) -> str:
        when = item.created_at or item.synced_at or datetime.now(timezone.utc)
        rendered = render_destination(
            self.template,
            create_time=when,
            media_key=item.media_key or item.name,
            name=item.name,
            media_type=item.media_type or "IMAGE",
            ext="x",
        )
        stem = str(rendered)[: -len(".x")]
        resolve_inside(self.root, f"{stem}.x", item=item.name)
        return stem

    def _adopt(self, item: StoredItem, destination: str) -> bool:
        """Record a whole file a worker left at the destination (the parent died before recording)."""
        for ext in _EXTENSIONS:
            path = self.root / f"{destination}.{ext}"
            if not path.is_file() or path.is_symlink():
                continue
            with path.open("rb") as handle:
                kind = sniff(handle.read(64))
            if kind is None or kind.extension != ext:
                continue
            try:
                verify_complete(path, kind, path.stat().st_size, item=item.name)
            except IntegrityError:
                continue
            self.adopted += 1
            self._pending.append(
                DownloadRecord(
                    name=item.name, ok=True, attempts=0, local_path=f"{destination}.{ext}",
                    size_bytes=path.stat().st_size, sha256=sha256_file(path), mime_type=kind.mime_type,
                    downloaded_at=iso_utc(),
                )
            )  # fmt: skip
            _log.info("file_adopted", item=item.name, path=f"{destination}.{ext}")
            return True
        return False

    # ----------------------------------------------------------- recording

    def keep_only(self, claimed: set[str]) -> None:
        """Drop the jobs another run holds a lease on."""
        kept = [job for job in self.jobs if job.name in claimed]
        self.busy_elsewhere += len(self.jobs) - len(kept)
        self.jobs = kept

    def run(self, pool: DownloadPool) -> None:
        """Send the jobs through *pool*, recording each result as it comes."""
        try:
            for outcome in pool.as_completed(iter(self.jobs)):
                self._record(outcome)
        finally:
            self._flush()

    def _record(self, outcome: JobOutcome[DownloadJob]) -> None:
        job = outcome.job
        result = outcome.result
        self._results += 1
        if isinstance(result, DownloadResult):
            for note in result.notes:
                _log.info("download_note", item=job.name, note=note)
        if outcome.exception is not None or not isinstance(result, DownloadResult):
            error = outcome.exception or TypeError(f"the handler returned {type(result).__name__}")
            self._fail(job.name, error)
        elif result.ok:
            self.downloaded += 1
            self.bytes += result.size or 0
            self.fallback += result.source == "fife"
            self._pending.append(
                DownloadRecord(
                    name=job.name, ok=True, attempts=result.attempts, local_path=result.local_path,
                    size_bytes=result.size, sha256=result.sha256, mime_type=result.mime_type,
                    downloaded_at=iso_utc(), prompt=result.prompt, seed=result.seed, model=result.model,
                )
            )  # fmt: skip
        else:
            self._fail(job.name, None, result)
        ok = outcome.ok and isinstance(result, DownloadResult) and result.ok
        self._failed_in_run += not ok
        if self.on_progress is not None:
            self.on_progress(
                DownloadProgress(
                    self._results, len(self.jobs), self.bytes, self._failed_in_run, job.name, ok
                )
            )
        if (
            len(self._pending) >= _FLUSH_RESULTS
            or time.monotonic() - self._flushed_at >= _FLUSH_SECONDS
        ):
            self._flush()

    def not_found(self, name: str) -> None:
        """A name asked for that the catalogue does not hold (or holds as gone from Flow)."""
        self.failures.append(
            DownloadFailure(
                name,
                "NotFoundError",
                f"{name}: not in the catalogue as present on Flow (run a sync)",
            )
        )

    def _fail(
        self, name: str, error: BaseException | None, result: DownloadResult | None = None
    ) -> None:
        if result is not None:
            kind, message = result.error_kind or "DownloadError", result.error_message or "failed"
            attempts = max(result.attempts, 1)
        else:
            assert error is not None
            kind, message, attempts = type(error).__name__, str(error) or type(error).__name__, 1
        self.failures.append(DownloadFailure(name, kind, message))
        self._pending.append(
            DownloadRecord(
                name=name,
                ok=False,
                attempts=attempts,
                error=f"{kind}: {message}",
                clear_local_path=name in self._cleared,
            )
        )
        _log.info("download_failed", item=name, kind=kind, error=message)

    def _flush(self) -> None:
        records, self._pending = self._pending, []
        self._flushed_at = time.monotonic()
        if records:
            self.store.record_downloads(self.profile_id, records)

    def report(self, selected: int) -> DownloadReport:
        """The summary of this call."""
        return DownloadReport(
            profile_id=self.profile_id,
            selected=selected,
            downloaded=self.downloaded,
            skipped=self.skipped,
            adopted=self.adopted,
            bytes=self.bytes,
            from_fallback=self.fallback,
            failures=tuple(self.failures),
            duration=time.monotonic() - self.started,
            not_retried=self.not_retried,
            busy_elsewhere=self.busy_elsewhere,
        )
