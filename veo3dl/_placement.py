"""Where each item of a download call goes, so that no two items share a file.

The path template gives each item a *stem*: its path under the storage root
without the extension (which only the bytes tell).  Two items can get the
same stem — the listing gave them the same media key and day, or their stems
differ only in case and the disk ignores case — and would then overwrite
each other's file.  :class:`Placement` sees every row of the catalogue and
gives each item a stem that no other row records and no other item of the
call gets:

* an item keeps its template stem when no other row records a file there,
  and either it records its own file there or no other row of the profile
  has the same template stem;
* otherwise ``~`` and 12 hex digits of the SHA-256 of its name are appended
  to the stem (so the choice depends neither on which items a call selects
  nor on their order, and a re-run finds what a killed run wrote);
* stems are compared case-insensitively (Unicode case folding, NFC).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath

from veo3dl._paths import fold_path, render_destination, resolve_inside, unique_stem
from veo3dl._records import StoredItem
from veo3dl._sniff import MediaKind
from veo3dl._store import ImageStore
from veo3dl.exceptions import StorageError, Veo3dlError

__all__ = ["EXTENSIONS", "Placement", "recorded_relative"]

EXTENSIONS = tuple(sorted({kind.extension for kind in MediaKind}))
"""Every extension a downloaded file can have."""

_Row = tuple[str, str]  # (profile_id, name)


def recorded_relative(local_path: str | None, root: Path) -> str | None:
    """A recorded ``local_path`` relative to *root* (``/``-separated), or None if outside it."""
    if not local_path:
        return None
    path = Path(local_path)
    if not path.is_absolute():
        return PurePosixPath(local_path).as_posix()
    try:
        return Path(path.absolute()).relative_to(root).as_posix()
    except ValueError:
        return None


def _stem_of(relative: str) -> str:
    head, dot, ext = relative.rpartition(".")
    return head if dot and "/" not in ext and ext.lower() in EXTENSIONS else relative


class Placement:
    """The stems of one download call (see the module docstring).

    *rows* are every row of the catalogue, of every profile: a file recorded
    under the same root by another profile is not to be overwritten either.
    """

    def __init__(
        self, root: Path, template: str, profile_id: str, rows: Iterable[StoredItem]
    ) -> None:
        self.root = root
        self.template = template
        self.profile_id = profile_id
        self._recorded: defaultdict[str, set[_Row]] = defaultdict(set)
        self._by_template: defaultdict[str, set[str]] = defaultdict(set)
        self._given: dict[str, str] = {}
        self._templated: dict[str, str] = {}  # name -> template stem, for this profile's rows
        self._safe_folders: set[str] = set()  # folders (relative) checked to stay inside
        for row in rows:
            relative = recorded_relative(row.local_path, root)
            if relative is not None:
                self._recorded[fold_path(_stem_of(relative))].add((row.profile_id, row.name))
            if row.profile_id == profile_id:
                try:
                    rendered = self._templated[row.name] = self._rendered(row)
                except Veo3dlError:
                    continue  # fails on its own when selected
                self._by_template[fold_path(rendered)].add(row.name)

    @classmethod
    def of_store(cls, store: ImageStore, root: Path, template: str, profile_id: str) -> Placement:
        """A placement over every row *store* holds."""
        rows = [row for profile in store.profiles() for row in store.items(profile)]
        return cls(root, template, profile_id, rows)

    def template_stem(self, item: StoredItem) -> str:
        """The stem the template gives *item*, checked to stay inside the root."""
        stem = self._templated.get(item.name) or self._rendered(item)
        self._check_inside(stem, item)
        return stem

    def _check_inside(self, stem: str, item: StoredItem) -> None:
        # Resolving every path walks every folder of it; the items of a call
        # share a few date folders, so each folder is resolved once.  The
        # file name itself is a rendered, sanitised component.
        folder, _, base = stem.rpartition("/")
        if (
            folder in self._safe_folders
            and base not in ("", ".", "..")
            and not {"\x00", "\\"} & set(base)
        ):
            return
        resolve_inside(self.root, f"{stem}.x", item=item.name)
        self._safe_folders.add(folder)

    def _rendered(self, item: StoredItem) -> str:
        when = item.created_at or item.synced_at or datetime.now(timezone.utc)
        rendered = render_destination(
            self.template,
            create_time=when,
            media_key=item.media_key or item.name,
            name=item.name,
            media_type=item.media_type or "IMAGE",
            ext="x",
        )
        return str(rendered)[: -len(".x")]

    def _others(self, stem: str, item: StoredItem) -> set[_Row]:
        return self._recorded.get(fold_path(stem), set()) - {(self.profile_id, item.name)}

    def shared(self, item: StoredItem) -> bool:
        """True when another row records the same file as *item*."""
        relative = recorded_relative(item.local_path, self.root)
        return relative is not None and bool(self._others(_stem_of(relative), item))

    def stem(self, item: StoredItem) -> str:
        """The stem *item* is downloaded or adopted at; unique in the catalogue and the call.

        Raises :class:`UnsafePathError` for a path outside the root and
        :class:`StorageError` when no unique stem can be had.
        """
        plain = self.template_stem(item)
        key = fold_path(plain)
        mine = (self.profile_id, item.name) in self._recorded.get(key, ())
        alone = self._by_template.get(key, set()) <= {item.name}
        chosen = plain
        if self._others(plain, item) or not (mine or alone):
            chosen = unique_stem(plain, item.name)
            self._check_inside(chosen, item)
            taken = self._others(chosen, item)
            if taken:
                raise StorageError(
                    f"{chosen} is recorded for {sorted(taken)[0][1]} already",
                    path=str(self.root / chosen),
                    item=item.name,
                    hint="two items would share one file; nothing was written",
                )
        holder = self._given.setdefault(fold_path(chosen), item.name)
        if holder != item.name:
            raise StorageError(
                f"{chosen} is also where {holder} goes in this run",
                path=str(self.root / chosen),
                item=item.name,
                hint="two items would share one file; nothing was written",
            )
        return chosen
