"""A static HTML gallery of the downloaded items: one file, no network, no framework.

Thumbnails are the files themselves (images scaled by CSS, videos with
``preload="metadata"``), grouped by creation date, newest first, each with
its prompt, model and aspect ratio, and linked by a path relative to the page
so that it works when opened straight from disk.  Every text from the
catalogue is escaped: prompts are user input.
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


def render_gallery(
    items: Sequence[StoredItem], storage_root: Path, page: Path, *, title: str
) -> tuple[str, int]:
    """The page's HTML and how many items it shows (those whose file exists)."""
    page_dir = page.parent.resolve()
    shown: list[tuple[StoredItem, Path]] = []
    for item in items:
        if not item.local_path:
            continue
        path = Path(item.local_path)
        file = path if path.is_absolute() else storage_root / PurePosixPath(item.local_path)
        if file.is_file():
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
    items: Sequence[StoredItem], storage_root: Path, page: Path, *, title: str
) -> int:
    """Write the gallery page to *page* (atomically); return how many items it shows."""
    document, count = render_gallery(items, storage_root, page, title=title)
    page.parent.mkdir(parents=True, exist_ok=True)
    temporary = page.with_name(f".{page.name}.tmp")
    temporary.write_text(document, encoding="utf-8")
    os.replace(temporary, page)
    return count
