"""Rows of the catalogue as values: stored items, counts, download records."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

import attrs

from veo3dl._redaction import redact_url

__all__ = ["DateCounts", "DownloadRecord", "StoreCounts", "StoredItem"]


def _parse_time(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    text = value[:-1] + "+00:00" if value.endswith("Z") else value
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return (
        parsed.replace(tzinfo=timezone.utc)
        if parsed.tzinfo is None
        else parsed.astimezone(timezone.utc)
    )


def _url_repr(url: str | None) -> str:
    return "None" if url is None else repr(redact_url(url))


@attrs.frozen
class StoredItem:
    """One row of the catalogue.

    ``local_path`` is relative to the storage root (rows adopted from the
    seed app may hold absolute paths); ``remote_state`` is ``"present"`` or
    ``"missing"`` (gone from Flow at the last complete sync).
    """

    id: str
    profile_id: str
    name: str
    media_type: str | None
    media_key: str | None
    created_at: datetime | None
    aspect_ratio: str | None = None
    workflow_id: str | None = None
    project_id: str | None = None
    prompt: str | None = None
    seed: int | None = None
    model: str | None = None
    fife_url: str | None = attrs.field(default=None, repr=_url_repr)
    local_path: str | None = None
    size_bytes: int | None = None
    sha256: str | None = None
    mime_type: str | None = None
    downloaded_at: datetime | None = None
    synced_at: datetime | None = None
    remote_state: str = "present"
    attempts: int = 0
    last_error: str | None = None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> StoredItem:
        """Build from a ``SELECT *`` row."""
        return cls(
            id=str(row["id"]),
            profile_id=row["profile_id"],
            name=row["name"],
            media_type=row.get("media_type"),
            media_key=row.get("media_key"),
            created_at=_parse_time(row.get("created_at")),
            aspect_ratio=row.get("aspect_ratio"),
            workflow_id=row.get("workflow_id"),
            project_id=row.get("project_id"),
            prompt=row.get("prompt"),
            seed=row.get("seed"),
            model=row.get("model"),
            fife_url=row.get("fife_url"),
            local_path=row.get("local_path") or None,
            size_bytes=row.get("size_bytes"),
            sha256=row.get("sha256"),
            mime_type=row.get("mime_type"),
            downloaded_at=_parse_time(row.get("downloaded_at")),
            synced_at=_parse_time(row.get("synced_at")),
            remote_state=row.get("remote_state") or "present",
            attempts=int(row.get("attempts") or 0),
            last_error=row.get("last_error"),
        )


@attrs.frozen
class StoreCounts:
    """Totals for one profile.  ``bytes`` counts the files recorded as on disk."""

    items: int
    downloaded: int
    pending: int
    failed: int
    missing: int
    bytes: int


@attrs.frozen
class DateCounts:
    """Totals for one creation date (``YYYY-MM-DD``, UTC)."""

    date: str
    items: int
    downloaded: int
    bytes: int


@attrs.frozen
class DownloadRecord:
    """What to write to the catalogue after one download attempt.

    A success sets the file fields and clears ``last_error``; a failure adds
    to ``attempts`` and sets ``last_error``.  *forget_if* is the row's
    ``(local_path, downloaded_at)`` as the run found it, when that recorded
    file was gone or not the item's: the failure then clears the file fields,
    so that the catalogue never claims a file that is not there, but only if
    the row still holds those values (another run may have recorded the item
    meanwhile).  ``sha256`` is kept as the item's known hash.  A storage root
    that is missing or empty as a whole is refused before any of this (see
    :class:`~veo3dl.ImageService`).
    """

    name: str
    ok: bool
    attempts: int = 1
    local_path: str | None = None
    size_bytes: int | None = None
    sha256: str | None = None
    mime_type: str | None = None
    downloaded_at: str | None = None
    prompt: str | None = None
    seed: int | None = None
    model: str | None = None
    error: str | None = None
    forget_if: tuple[str | None, str | None] | None = None

    def update_statement(self, table: str, profile_id: str) -> tuple[str, tuple[Any, ...]]:
        """The ``UPDATE`` for this record, with its parameters."""
        if self.ok:
            return (
                f"UPDATE {table} SET local_path = ?, size_bytes = ?, sha256 = ?, mime_type = ?, "
                "downloaded_at = ?, last_error = NULL, attempts = coalesce(attempts, 0) + ?, "
                "prompt = coalesce(?, prompt), seed = coalesce(?, seed), model = coalesce(?, model) "
                "WHERE profile_id = ? AND name = ?",
                (
                    self.local_path, self.size_bytes, self.sha256, self.mime_type, self.downloaded_at,
                    self.attempts, self.prompt, self.seed, self.model, profile_id, self.name,
                ),
            )  # fmt: skip
        if self.forget_if is None:
            return (
                f"UPDATE {table} SET attempts = coalesce(attempts, 0) + ?, last_error = ? "
                "WHERE profile_id = ? AND name = ?",
                (self.attempts, self.error, profile_id, self.name),
            )
        # Every SET expression reads the row as it was, so one test serves all
        # four; sha256 stays: it still says which bytes are the item's, so a
        # stray file at its path is never adopted as the item's file.
        same = "(local_path IS ? AND downloaded_at IS ?)"
        clears = ", ".join(
            f"{column} = CASE WHEN {same} THEN NULL ELSE {column} END"
            for column in ("local_path", "size_bytes", "mime_type", "downloaded_at")
        )
        return (
            f"UPDATE {table} SET attempts = coalesce(attempts, 0) + ?, last_error = ?, {clears} "
            "WHERE profile_id = ? AND name = ?",
            (self.attempts, self.error, *self.forget_if * 4, profile_id, self.name),
        )
