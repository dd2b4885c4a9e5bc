"""Progress display for the command line: bars on a terminal, plain lines elsewhere.

The library never prints; it reports through callbacks (``on_page``,
``on_progress``).  These classes turn those reports into output on the
command's stderr: a bar redrawn in place at most ten times a second on a
terminal, or a plain line every few seconds when the output is a file or a
pipe (CI logs), and nothing with ``--quiet``.
"""

from __future__ import annotations

import shutil
import sys
import time
from typing import TextIO

from veo3dl._download_run import DownloadProgress
from veo3dl._sync import SyncProgress

__all__ = ["ProgressDisplay", "human_bytes", "human_duration"]

_REDRAW = 0.1  # seconds between redraws on a terminal
_PLAIN_EVERY = 5.0  # seconds between plain lines


def human_bytes(count: float) -> str:
    """``1536`` -> ``"1.5 KB"`` (powers of 1024, as file managers show)."""
    value = float(count)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(value) < 1024 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TB"  # pragma: no cover - the loop always returns


def human_duration(seconds: float) -> str:
    """``75`` -> ``"1m15s"``."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


class ProgressDisplay:
    """Renders sync and download progress to *stream* (stderr by default)."""

    def __init__(
        self, stream: TextIO | None = None, *, quiet: bool = False, tty: bool | None = None
    ) -> None:
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.tty = self.stream.isatty() if tty is None else tty
        self._started = time.monotonic()
        self._last_draw = 0.0
        self._drawn = False

    def _emit(self, text: str, *, final: bool) -> None:
        if self.quiet:
            return
        now = time.monotonic()
        if self.tty:
            if not final and now - self._last_draw < _REDRAW:
                return
            width = shutil.get_terminal_size((100, 20)).columns
            self.stream.write("\r" + text[: width - 1] + "\x1b[K")
            if final:
                self.stream.write("\n")
            self._drawn = not final
        else:
            if not final and now - self._last_draw < _PLAIN_EVERY:
                return
            self.stream.write(text + "\n")
        self._last_draw = now
        self.stream.flush()

    def restart(self) -> None:
        """Start timing a new phase."""
        self._started = time.monotonic()
        self._last_draw = 0.0

    # ------------------------------------------------------------------ sync

    def sync_page(self, progress: SyncProgress) -> None:
        """After each listing page."""
        spinner = "|/-\\"[progress.page % 4]
        label = "sync" if self.tty else "sync:"
        text = f"{label} {spinner if self.tty else ''} page {progress.page}, {progress.seen} items listed"
        self._emit(" ".join(text.split()), final=False)

    def sync_done(self, pages: int, seen: int, inserted: int) -> None:
        """After the sync."""
        elapsed = human_duration(time.monotonic() - self._started)
        self._emit(f"sync: {pages} pages, {seen} items, {inserted} new in {elapsed}", final=True)

    # -------------------------------------------------------------- download

    def download(self, progress: DownloadProgress) -> None:
        """After each downloaded (or failed) item."""
        final = progress.done >= progress.total
        self._emit(self._download_text(progress), final=final)

    def _download_text(self, progress: DownloadProgress) -> str:
        elapsed = max(time.monotonic() - self._started, 1e-6)
        rate = progress.bytes / elapsed
        fraction = progress.done / progress.total if progress.total else 1.0
        eta = (elapsed / fraction - elapsed) if 0 < fraction < 1 else 0.0
        failed = f", {progress.failed} failed" if progress.failed else ""
        stats = (
            f"{progress.done}/{progress.total} items, {human_bytes(progress.bytes)}, "
            f"{human_bytes(rate)}/s, ETA {human_duration(eta)}{failed}"
        )
        if not self.tty:
            return f"download: {fraction:4.0%} {stats}"
        width = 24
        filled = int(width * fraction)
        bar = "#" * filled + "-" * (width - filled)
        return f"download [{bar}] {fraction:4.0%} {stats}"

    def download_done(self, done: int, total: int, size: int) -> None:
        """After the download, when the last item's line may not have been final."""
        if self._drawn:
            self._emit(f"download: {done}/{total} items, {human_bytes(size)}", final=True)
