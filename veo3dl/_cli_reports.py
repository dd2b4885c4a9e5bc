"""What the ``veo3dl`` commands say when the work is done, and the exit code it implies.

Also how the reporting commands (``status``, ``gallery``) open the catalogue:
read-only, so that looking at a catalogue (or at another program's database
given by mistake) never changes it.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Sequence
from pathlib import Path

import click

from veo3dl._cli_support import AUTH_KINDS, EXIT_AUTH, EXIT_FAILED, EXIT_USAGE, LOGIN_HINT
from veo3dl._download_run import DownloadFailure, DownloadReport
from veo3dl._progress import human_bytes, human_duration
from veo3dl._store import ImageStore
from veo3dl.exceptions import ConfigError

__all__ = [
    "counted",
    "download_exit_code",
    "download_summary",
    "key_refused",
    "open_for_report",
    "require_profile",
]

# Google's words for a refused API key (HTTP 400 API_KEY_INVALID, 403 API_KEY_EXPIRED...).
# The reason code does not cross back from the workers, only the message does.
_KEY_REFUSED = re.compile(r"\bAPI key (?:not valid|expired|invalid)", re.IGNORECASE)


def counted(count: int, noun: str, plural: str | None = None) -> str:
    """``1 item``, ``2 items`` (or *plural* for an irregular noun)."""
    return f"{count} {noun if count == 1 else plural or noun + 's'}"


@contextlib.contextmanager
def open_for_report(db: Path) -> Iterator[ImageStore]:
    """The catalogue at *db*, read-only (a missing file is a :class:`StorageError`: exit 2)."""
    with ImageStore(db, read_only=True) as store:
        migration = store.migration
        if migration.migrated:
            merged = (
                f" ({counted(migration.merged_duplicates, 'duplicate row')} merged)"
                if migration.merged_duplicates
                else ""
            )
            click.echo(
                f"note: {db} is in an older format (the seed app's, or an older veo3dl's): "
                f"shown upgraded in memory{merged}; the file was not changed "
                "(`veo3dl sync` upgrades it)",
                err=True,
            )
        yield store


def require_profile(store: ImageStore, profile: str, db: Path) -> None:
    """Raise :class:`ConfigError` when the catalogue holds no item of *profile*."""
    known = store.profiles()
    if profile in known:
        return
    held = (
        "it holds " + ", ".join(repr(name) for name in known) if known else "it holds no items yet"
    )
    raise ConfigError(
        f"no items for profile {profile!r} in {db}",
        hint=f"{held}; run `veo3dl sync --db {db} --profile {profile}` first, or check --profile",
    )


def download_summary(report: DownloadReport) -> str:
    """The one line ``download`` prints on stdout."""
    parts = [
        f"{report.skipped} already on disk",
        f"{report.adopted} recovered from an interrupted run",
        f"{report.failed} failed",
    ]
    if report.not_retried:
        parts.append(f"{report.not_retried} failed before (use --retry-failed)")
    if report.busy_elsewhere:
        parts.append(f"{report.busy_elsewhere} being downloaded by another run")
    return (
        f"downloaded {counted(report.downloaded, 'item')} ({human_bytes(report.bytes)}) "
        f"in {human_duration(report.duration)}; " + ", ".join(parts)
    )


def key_refused(failure: DownloadFailure) -> bool:
    """Whether *failure* is the api host refusing the API key (the same for every item)."""
    return bool(_KEY_REFUSED.search(failure.message))


def _need(count: int) -> str:
    return f"{counted(count, 'item')} {'needs' if count == 1 else 'need'}"


def download_exit_code(report: DownloadReport) -> int:
    """Print what went wrong on stderr; return the exit code of ``download``.

    A refused API key is a configuration error (2), said once rather than
    per item; a stale login is 3; failed items, or items left alone because
    they failed before, are 1.  Items another run is downloading are not an
    error: that run records them.
    """
    refused: Sequence[DownloadFailure] = [f for f in report.failures if key_refused(f)]
    for failure in report.failures:
        if failure not in refused:
            message = failure.message.removeprefix(f"{failure.name}: ")
            click.echo(f"FAILED {failure.name}: {failure.kind}: {message}", err=True)
    if refused:
        click.echo(
            f"veo3dl: the api host refused the API key ({counted(len(refused), 'item')} not "
            "downloaded): set "
            "VEO3DL_API_KEY (or --api-key) to the key= the Flow web app sends, then run again "
            "with --retry-failed",
            err=True,
        )
        return EXIT_USAGE
    if report.not_retried:
        n = report.not_retried
        click.echo(
            f"veo3dl: {counted(n, 'item')} failed in an earlier run and "
            f"{'was' if n == 1 else 'were'} not tried again: run with --retry-failed to try "
            f"{'it' if n == 1 else 'them'}",
            err=True,
        )
    auth = [f for f in report.failures if f.kind in AUTH_KINDS]
    if auth:
        # Items without a signed URL needed the API, which refused the session.
        click.echo(f"veo3dl: {_need(len(auth))} a fresh login: {LOGIN_HINT}", err=True)
        return EXIT_AUTH
    if report.failures or report.not_retried:
        return EXIT_FAILED
    return 0
