"""The default download handler: API first, signed-URL fallback, verified atomic files.

For each :class:`~veo3dl.DownloadJob`, in a worker process:

1. Fetch the item from the api host (bearer token and key, raw name),
   decoding the base64 file out of the answer as it streams into a hidden
   part file beside the destination, hashing as it goes.
2. If that fails after the client's retries — or the bytes are not a whole
   media file — fetch the item's signed file URL instead (unless its
   ``Expires`` has passed), resuming with ``Range`` if the connection is cut.
3. Sniff the bytes: PNG, JPEG, GIF, WebP, AVIF/HEIC, MP4/MOV or WebM is
   accepted and gives the extension; HTML, JSON, XML or unknown bytes are an
   :class:`~veo3dl.exceptions.IntegrityError`, and so is an image for a
   ``VIDEO`` job or a video for an ``IMAGE`` one.  Check the file is whole
   (a truncated PNG or MP4 has valid magic bytes too).
4. fsync, rename into ``destination.{ext}``, fsync the folder.  A file
   already there is replaced only when it is one the job lists as
   replaceable (``DownloadJob.replaceable``), is not whole media (a leftover), or
   holds the very same bytes; otherwise the item fails with
   :class:`~veo3dl.exceptions.StorageError` and the file is left alone.

A failure is returned as a :class:`~veo3dl.DownloadResult` naming the error,
with nothing left on disk.  Disk errors (full, read-only) are not worth a
second source and end the item at once.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from veo3dl._atomic import AtomicFile
from veo3dl._client import FlowClient, MediaInfo
from veo3dl._credentials import Credentials
from veo3dl._file_checks import check_media_type, sha256_file, whole_media
from veo3dl._jobs import DownloadJob, DownloadResult, MediaFetcher, TransportSpec
from veo3dl._logging import get_logger
from veo3dl._paths import fold_path, resolve_inside
from veo3dl._sniff import describe_unwanted, sniff, verify_complete
from veo3dl.exceptions import (
    ConfigError,
    DownloadError,
    IntegrityError,
    StorageError,
    UnsafePathError,
    Veo3dlError,
)

__all__ = ["DownloadHandler", "default_handler"]

_log = get_logger(__name__)
# Errors no second source can cure.
_FINAL = (StorageError, UnsafePathError, ConfigError)


def _replace_check(job: DownloadJob, relative: str, part: AtomicFile) -> Callable[[Path], bool]:
    """Whether the download may replace the file at its final path (see the module docstring)."""
    listed = {fold_path(path) for path in job.replaceable}

    def may_replace(existing: Path) -> bool:
        if fold_path(relative) in listed:
            return True
        if not existing.is_file() or existing.is_symlink():
            return False
        try:
            whole_media(existing, None, item=job.name)
        except IntegrityError:
            return True  # a cut-short or damaged leftover: nobody's good file
        return sha256_file(existing) == part.sha256

    return may_replace


class _PartSink:
    """The client's :class:`~veo3dl._sinks.Sink` interface over an :class:`AtomicFile`."""

    def __init__(self, part: AtomicFile) -> None:
        self._part = part

    @property
    def size(self) -> int:
        return self._part.size

    def write(self, data: bytes) -> int:
        return self._part.write(data)

    def reset(self) -> None:
        if self._part.size:
            self._part.truncate_to(0)


class DownloadHandler:
    """The pool's default handler (one instance per worker process).

    Keeps one fetcher per access spec, so each worker reuses its HTTP
    connections and shares its bearer token across jobs and threads.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._fetchers: dict[TransportSpec | None, MediaFetcher] = {}

    def __repr__(self) -> str:
        return f"DownloadHandler(fetchers={len(self._fetchers)})"

    def _fetcher(self, spec: TransportSpec | None) -> MediaFetcher:
        with self._lock:
            fetcher = self._fetchers.get(spec)
            if fetcher is None:
                # Signed URLs need no credentials: a bare client fetches them.
                fetcher = spec.build() if spec is not None else FlowClient(Credentials())
                self._fetchers[spec] = fetcher
            return fetcher

    def __call__(self, job: DownloadJob) -> DownloadResult:
        """Download *job*; never raises for a failure of the item itself."""
        if not isinstance(job, DownloadJob):
            raise ConfigError(
                f"the default handler takes veo3dl.DownloadJob, not {type(job).__name__}"
            )
        started = time.monotonic()
        tried: list[str] = []
        errors: list[Veo3dlError] = []
        try:
            return self._download(job, started, tried, errors)
        except Veo3dlError as error:
            if not errors or errors[-1] is not error:
                errors.append(error)
        except Exception as error:  # noqa: BLE001 - a bug must fail one item, not the batch
            _log.error("download_bug", item=job.name, error=traceback.format_exc(limit=10))
            errors.append(
                DownloadError(f"unexpected {type(error).__name__}: {error}", item=job.name)
            )
        return _failure(job, errors, started, tried)

    def _download(
        self, job: DownloadJob, started: float, tried: list[str], errors: list[Veo3dlError]
    ) -> DownloadResult:
        root = Path(job.storage_root)
        # Validate the folder before writing anything into it.
        probe = resolve_inside(root, f"{job.destination}.download", item=job.name)
        with AtomicFile(probe, item=job.name) as part:
            sink = _PartSink(part)
            info: MediaInfo | None = None
            source = None
            if job.access is not None:
                tried.append("api")
                try:
                    fetched = self._fetcher(job.access).fetch_media_into(job.name, sink)
                    _check_whole(part, job)
                    info = fetched if isinstance(fetched, MediaInfo) else None
                    source = "api"
                except _FINAL:
                    raise
                except Veo3dlError as error:
                    errors.append(error)
                    _log.info("api_failed_falling_back", item=job.name, error=str(error))
            if source is None:
                source = self._from_signed_url(job, sink, part, tried, errors)
            kind = sniff(part.head)
            assert kind is not None  # _check_whole passed
            relative = f"{job.destination}.{kind.extension}"
            # Same folder as the probe, already resolved inside the root; the
            # extension is one of ours.  (rename replaces a symlink, never follows it.)
            final = probe.with_name(probe.name[: -len("download")] + kind.extension)
            part.commit(final, may_replace=_replace_check(job, relative, part))
            payload: Any = info.payload if info is not None else None
            notes = tuple(
                f"{source} failed first: {_short(error)}"
                for source, error in zip(tried, errors, strict=False)
            )
            return DownloadResult(
                name=job.name,
                ok=True,
                local_path=relative,
                size=part.size,
                sha256=part.sha256,
                mime_type=kind.mime_type,
                source=source,
                attempts=len(tried),
                elapsed=time.monotonic() - started,
                prompt=getattr(payload, "prompt", None),
                seed=getattr(payload, "seed", None),
                model=getattr(payload, "model", None),
                notes=notes,
            )

    def _from_signed_url(
        self,
        job: DownloadJob,
        sink: _PartSink,
        part: AtomicFile,
        tried: list[str],
        errors: list[Veo3dlError],
    ) -> str:
        if job.fife_url is None:
            if errors:
                raise errors[-1]
            raise DownloadError(
                "no way to fetch it: no API access and no signed URL",
                item=job.name,
                hint="run a sync first",
            )
        tried.append("fife")
        try:
            self._fetcher(job.access).download_signed_url(job.fife_url, sink, item=job.name)
            _check_whole(part, job)
        except Veo3dlError as error:
            errors.append(error)
            raise
        return "fife"


def _check_whole(part: AtomicFile, job: DownloadJob) -> None:
    """The bytes must be whole media of the job's type; else IntegrityError (and start over)."""
    kind = sniff(part.head)
    if kind is None:
        what = describe_unwanted(part.head)
        part.truncate_to(0)
        raise IntegrityError(
            f"the server sent {what}, not a media file", item=job.name, hint="nothing was kept"
        )
    try:
        verify_complete(part.temp_path, kind, part.size, item=job.name)
        check_media_type(kind, job.media_type, item=job.name)
    except IntegrityError:
        part.truncate_to(0)
        raise


def _short(error: Veo3dlError) -> str:
    text = str(error)
    prefix = f"{error.item}: " if error.item else ""
    return f"{type(error).__name__}: {text.removeprefix(prefix)}"


def _failure(
    job: DownloadJob, errors: list[Veo3dlError], started: float, tried: list[str]
) -> DownloadResult:
    """A failed result naming the last error, and what each source said."""
    last = errors[-1]
    if len(errors) > 1:
        message = f"{job.name}: " + "; then ".join(
            f"{source}: {_short(error)}" for source, error in zip(tried, errors, strict=False)
        )
    else:
        message = str(last)
    return DownloadResult(
        name=job.name,
        ok=False,
        source=tried[-1] if tried else None,
        attempts=len(tried),
        error_kind=type(last).__name__,
        error_message=message,
        elapsed=time.monotonic() - started,
    )


def default_handler() -> DownloadHandler:
    """The handler a :class:`~veo3dl.DownloadPool` uses when given none."""
    return DownloadHandler()
