"""A static HTML gallery of the downloaded items: one file, no network, no framework.

Thumbnails are the files themselves (images scaled by CSS, videos with
``preload="metadata"``), grouped by creation date, newest first, each with
its prompt, model and aspect ratio, and linked by a path relative to the page
so that it works when opened straight from disk.  Every text from the
catalogue is escaped: prompts are user input.

The catalogue records paths relative to the storage root, not the root
itself: when none of the recorded files is under the root given, no page is
written (an empty page would look like an empty library) and the error says
where they are, when one of the likely roots holds them.
"""

from __future__ import annotations

import html
import os
from collections.abc import Sequence
from datetime import datetime, timezone
from itertools import groupby
from pathlib import Path, PurePosixPath
from urllib.parse import quote

from veo3dl._progress import human_bytes
from veo3dl._records import StoredItem
from veo3dl._version import __version__
from veo3dl.exceptions import ConfigError

__all__ = ["render_gallery", "write_gallery"]

_STYLE = """
body{font-family:system-ui,sans-serif;margin:0;background:#111;color:#eee}
header{padding:1rem 1.5rem;background:#1b1b1b;position:sticky;top:0}
h1{font-size:1.2rem;margin:0}h2{font-size:1rem;margin:1.5rem 1.5rem .5rem;color:#aaa}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(220px,1fr));gap:12px;padding:0 1.5rem}
figure{margin:0;background:#1d1d1d;border-radius:8px;overflow:hidden}
figure a{display:block;background:#000}
figure img,figure video{width:100%;height:220px;object-fit:cover;display:block}
figcaption{padding:.5rem .6rem;font-size:.8rem;line-height:1.3}
.meta{color:#999;margin-top:.3rem}.prompt{max-height:5.2em;overflow:auto}
"""


def _href(file: Path, page_dir: Path) -> str:
    relative = PurePosixPath(Path(os.path.relpath(file, page_dir)).as_posix())
    return "/".join(quote(part) for part in relative.parts)


def _card(item: StoredItem, file: Path, page_dir: Path) -> str:
    href = html.escape(_href(file, page_dir), quote=True)
    is_video = (item.mime_type or "").startswith("video/") or item.media_type == "VIDEO"
    if is_video:
        thumb = f'<video src="{href}" preload="metadata" muted playsinline></video>'
    else:
        thumb = f'<img src="{href}" loading="lazy" alt="{html.escape(item.prompt or item.name, quote=True)}">'
    prompt = html.escape(item.prompt or "(no prompt recorded)")
    details = " · ".join(
        html.escape(part)
        for part in (
            item.model or "",
            (item.aspect_ratio or "")
            .replace("IMAGE_ASPECT_RATIO_", "")
            .replace("VIDEO_ASPECT_RATIO_", "")
            .lower(),
            human_bytes(item.size_bytes) if item.size_bytes else "",
        )
        if part
    )
    return (
        f'<figure><a href="{href}">{thumb}</a><figcaption><div class="prompt">{prompt}</div>'
        f'<div class="meta">{details}</div></figcaption></figure>'
    )


def _file(item: StoredItem, storage_root: Path) -> Path | None:
    """Where *item*'s recorded file is under *storage_root* (absolute paths: the seed app's)."""
    if not item.local_path:
        return None
    path = Path(item.local_path)
    return path if path.is_absolute() else storage_root / PurePosixPath(item.local_path)


def _found(items: Sequence[StoredItem], storage_root: Path) -> int:
    return sum(1 for item in items if (file := _file(item, storage_root)) and file.is_file())


def _nothing_found(
    recorded: Sequence[StoredItem], storage_root: Path, other_roots: Sequence[Path]
) -> ConfigError:
    example = _file(recorded[0], storage_root)
    files = "file" if len(recorded) == 1 else "files"
    for root in other_roots:
        if root != storage_root and _found(recorded, root):
            return ConfigError(
                f"none of the {len(recorded)} downloaded {files} of this profile is under {storage_root}",
                hint=f"they are under {root}: pass --dest {root}",
            )
    return ConfigError(
        f"none of the {len(recorded)} downloaded {files} of this profile is under {storage_root} "
        f"(the first would be {example})",
        hint="pass --dest the folder `veo3dl download` saved into (the one holding the date folders)",
    )


def render_gallery(
    items: Sequence[StoredItem], storage_root: Path, page: Path, *, title: str
) -> tuple[str, int]:
    """The page's HTML and how many items it shows (those whose file exists)."""
    page_dir = page.parent.resolve()
    shown: list[tuple[StoredItem, Path]] = []
    for item in items:
        file = _file(item, storage_root)
        if file is not None and file.is_file():
            shown.append((item, file.resolve()))
    epoch = datetime(1970, 1, 1, tzinfo=timezone.utc)
    shown.sort(key=lambda pair: (pair[0].created_at or epoch, pair[0].name), reverse=True)
    sections = []
    for date, group in groupby(
        shown, key=lambda pair: pair[0].created_at.date() if pair[0].created_at else None
    ):
        cards = "".join(_card(item, file, page_dir) for item, file in group)
        heading = date.isoformat() if date else "undated"
        sections.append(f'<section><h2>{heading}</h2><div class="grid">{cards}</div></section>')
    body = "".join(sections) or "<p style='padding:1.5rem'>Nothing downloaded yet.</p>"
    document = (
        "<!doctype html>\n"
        f'<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>"
        f"<header><h1>{html.escape(title)} — {len(shown)} items</h1></header>{body}"
        f'<footer style="padding:1.5rem;color:#666;font-size:.75rem">made by veo3dl {__version__}</footer>'
        "</body></html>\n"
    )
    return document, len(shown)


def write_gallery(
    items: Sequence[StoredItem],
    storage_root: Path,
    page: Path,
    *,
    title: str,
    other_roots: Sequence[Path] = (),
) -> int:
    """Write the gallery page to *page* (atomically); return how many items it shows.

    When items were downloaded but none of their files is under
    *storage_root*, nothing is written: :class:`ConfigError`, naming the one
    of *other_roots* that holds them, if any does.
    """
    document, count = render_gallery(items, storage_root, page, title=title)
    recorded = [item for item in items if item.local_path]
    if recorded and not count:
        raise _nothing_found(recorded, storage_root, other_roots)
    page.parent.mkdir(parents=True, exist_ok=True)
    temporary = page.with_name(f".{page.name}.tmp")
    temporary.write_text(document, encoding="utf-8")
    os.replace(temporary, page)
    return count
