"""One ``download_images`` call: choose the items, run them through the pool, record results.

The parent does all the deciding and all the writing:

* an item whose recorded file is on disk with the recorded size is skipped
  without a request (when another row records the same file, its SHA-256
  must match too); a row from the seed app (no size recorded) is skipped
  only if its file is whole media of the item's type, and is then measured;
* each other item gets a destination no other row records and no other item
  of the call gets (:mod:`veo3dl._placement`);
* a whole file already at that destination is adopted without a request
  when the row records no file (a worker finished it, then the parent was
  killed before recording), or when it has the recorded SHA-256;
* everything else becomes a :class:`~veo3dl.DownloadJob` listing
  the files at its destination it may replace, and the pool's results are
  written to the catalogue in batched transactions as they arrive.  A
  failure records ``attempts`` and ``last_error``; if the item's recorded
  file was gone or wrong, its record is cleared too, so the catalogue never
  claims a file that is not there.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path, PurePosixPath

import attrs

from veo3dl._file_checks import file_matches, sha256_file, storage_error, whole_media
from veo3dl._jobs import DownloadJob, DownloadResult, TransportSpec
from veo3dl._logging import get_logger
from veo3dl._placement import EXTENSIONS, Placement
from veo3dl._pool import DownloadPool, JobOutcome
from veo3dl._records import DownloadRecord, StoredItem
from veo3dl._store import ImageStore, iso_utc
from veo3dl.exceptions import IntegrityError, StorageError, Veo3dlError

__all__ = ["DownloadFailure", "DownloadProgress", "DownloadReport", "DownloadRun"]

_log = get_logger(__name__)
_FLUSH_RESULTS = 50
_FLUSH_SECONDS = 0.5


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
        self.placement: Placement | None = None
        self._folders: dict[str, frozenset[str]] = {}  # folder -> names in it (casefolded)
        # Rows whose recorded file was gone or wrong: (local_path, downloaded_at) as found.
        self._forget: dict[str, tuple[str | None, str | None]] = {}

    # ------------------------------------------------------------ planning

    def plan(self, items: Sequence[StoredItem], placement: Placement | None = None) -> None:
        """Sort *items* into skipped, adopted, failed and jobs.

        *placement* decides where files go (by default one over the whole
        catalogue, see :mod:`veo3dl._placement`).
        """
        if placement is None:
            placement = Placement.of_store(self.store, self.root, self.template, self.profile_id)
        self.placement = placement
        for item in items:
            try:
                job = self._plan_one(item, placement)
            except Veo3dlError as error:
                self._fail(item.name, error)
                continue
            except OSError as error:  # e.g. a file that cannot be opened: fail this item only
                where = Path(error.filename) if error.filename else self.root
                self._fail(
                    item.name, storage_error(error, doing="reading", path=where, item=item.name)
                )
                continue
            except ValueError:  # a recorded path no file system takes (a NUL in a seed row)
                self._fail(
                    item.name,
                    StorageError(
                        "the recorded local_path cannot name a file (it holds a NUL)",
                        item=item.name,
                        hint="clear local_path of this row, then run again",
                    ),
                )
                continue
            if job is not None:
                self.jobs.append(job)
        self._flush()

    def _plan_one(self, item: StoredItem, placement: Placement) -> DownloadJob | None:
        if self._already_on_disk(item, placement):
            self.skipped += 1
            return None
        recorded = self._recorded_path(item)
        if recorded is not None:
            # If fetching it again fails, the catalogue forgets the file - but
            # only one under the storage root: a seed-app path on another disk
            # may be out of reach only for now (not mounted).
            if _is_inside(recorded, self.root):
                # As the row spells it (to the second, as iso_utc writes it); a
                # row spelled otherwise does not match, and is kept: the safe side.
                when = iso_utc(item.downloaded_at) if item.downloaded_at else None
                self._forget[item.name] = (item.local_path, when)
        elif item.last_error and not self.retry_failed:
            self.not_retried += 1
            return None
        stem = placement.stem(item)
        present = self._present(stem)
        if self._adopt(item, present):
            return None
        # Whatever is at the item's own (unique) destination now may be replaced by its download.
        return DownloadJob(
            name=item.name,
            destination=stem,
            storage_root=str(self.root),
            media_type=item.media_type,  # unknown (a seed-app row): either kind is accepted
            media_key=item.media_key,
            fife_url=item.fife_url,
            access=self.access,
            replaceable=present,
        )

    def _recorded_path(self, item: StoredItem) -> Path | None:
        if not item.local_path:
            return None
        path = Path(item.local_path)
        return path if path.is_absolute() else self.root / PurePosixPath(item.local_path)

    def _already_on_disk(self, item: StoredItem, placement: Placement) -> bool:
        """True when the recorded file is there (measured and checked once for a seed-app row)."""
        path = self._recorded_path(item)
        if path is None:
            return False
        if item.size_bytes is not None:
            # Two rows recording one file (an older version's doing): only the bytes can tell.
            digest = item.sha256 if placement.shared(item) else None
            return file_matches(path, item.size_bytes, digest)
        if not path.is_file():
            return False
        # A row adopted from the seed app: check the file once, then record it.
        try:
            kind = whole_media(path, item.media_type, item=item.name)
        except IntegrityError as error:
            _log.info("recorded_file_refused", item=item.name, path=str(path), error=str(error))
            return False  # fetched anew; the old file stays until the new one replaces it
        digest = sha256_file(path)
        if item.sha256 is not None and digest != item.sha256.lower():
            return False
        self._pending.append(
            DownloadRecord(
                name=item.name, ok=True, attempts=0, local_path=item.local_path,
                size_bytes=path.stat().st_size, sha256=digest, mime_type=kind.mime_type,
                downloaded_at=iso_utc(),
            )
        )  # fmt: skip
        return True

    def _present(self, stem: str) -> tuple[str, ...]:
        """The files (``stem.ext``, any media extension) at *stem* now, relative to the root.

        One listing per folder serves every item in it: a thousand items in a
        few date folders cost a few ``scandir`` calls, not twelve ``stat`` each.
        """
        folder, _, base = stem.rpartition("/")
        names = self._folders.get(folder)
        if names is None:
            try:
                with os.scandir(self.root / folder) as entries:
                    names = frozenset(entry.name.casefold() for entry in entries)
            except (FileNotFoundError, NotADirectoryError):
                names = frozenset()
            self._folders[folder] = names
        return tuple(f"{stem}.{ext}" for ext in EXTENSIONS if f"{base}.{ext}".casefold() in names)

    def _adopt(self, item: StoredItem, present: tuple[str, ...]) -> bool:
        """Record a whole file found at the item's destination, without a request.

        For a row with no recorded file that is a file a worker wrote just
        before the parent died; a row that records a file (its SHA-256 known)
        adopts only a file with those very bytes.  Anything else is fetched
        again and replaced atomically.
        """
        for relative in present:
            ext = relative.rpartition(".")[2]
            path = self.root / relative
            if not path.is_file() or path.is_symlink():
                continue
            try:
                kind = whole_media(path, item.media_type, item=item.name)
            except IntegrityError:
                continue
            if kind.extension != ext:
                continue
            digest = sha256_file(path)
            if item.sha256 is not None and digest != item.sha256.lower():
                _log.info("file_not_adopted", item=item.name, path=relative, why="other bytes")
                continue
            self.adopted += 1
            self._pending.append(
                DownloadRecord(
                    name=item.name, ok=True, attempts=0, local_path=relative,
                    size_bytes=path.stat().st_size, sha256=digest, mime_type=kind.mime_type,
                    downloaded_at=iso_utc(),
                )
            )  # fmt: skip
            _log.info("file_adopted", item=item.name, path=relative)
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
                forget_if=self._forget.get(name),
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


def _is_inside(path: Path, root: Path) -> bool:
    try:
        return path.resolve().is_relative_to(root.resolve())
    except (OSError, RuntimeError):  # unresolvable (a symlink loop): not ours to forget
        return False
