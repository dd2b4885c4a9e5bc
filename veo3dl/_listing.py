"""Following the paginated listing to its end, each item exactly once.

The service's cursor walks a set that can change between calls, pages were
seen to repeat items, and a client that sends ``meta`` with a cursor is
handed page 1 forever.  :class:`Listing` follows ``nextPageToken`` until it
is absent and guards against every loop: a token it has already been given,
a page holding only items already yielded, and a bound on pages.  It says
which of these ended it (:class:`~veo3dl.ListingStop`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from veo3dl._logging import Logger
from veo3dl._models import ListingPage, ListingStop, MediaItem
from veo3dl._protocol import ParsedPage

__all__ = ["Listing"]


class Listing(Iterator[ListingPage]):
    """An iterator over the pages of the library, newest items first.

    Each yielded :class:`~veo3dl.ListingPage` holds only items not yielded
    before.  Once exhausted, :attr:`stop` says why it ended and
    :attr:`complete` whether the whole library was seen.  Closing it early
    (``break``) leaves :attr:`stop` as ``None``.
    """

    def __init__(
        self,
        fetch: Callable[..., ParsedPage],
        *,
        max_pages: int,
        log: Logger,
    ) -> None:
        self._fetch = fetch
        self._max_pages = max_pages
        self._log = log
        self._seen: set[str] = set()
        self._tokens: set[str] = set()
        self._cursor: str | None = None
        self._done = False
        self.stop: ListingStop | None = None
        self.pages = 0
        self.items = 0
        self.skipped = 0
        self.repeated = 0

    @property
    def complete(self) -> bool:
        """True once the listing ended having seen the whole library."""
        return self.stop is not None and self.stop.complete

    def __iter__(self) -> Listing:
        return self

    def __next__(self) -> ListingPage:
        if self._done:
            raise StopIteration
        if self.pages >= self._max_pages:
            return self._end(ListingStop.PAGE_LIMIT)
        parsed = self._fetch(self._cursor, page=self.pages + 1)
        self.pages += 1
        fresh: list[MediaItem] = []
        for item in parsed.items:
            if item.name not in self._seen:
                self._seen.add(item.name)
                fresh.append(item)
        repeated = len(parsed.items) - len(fresh)
        self.items += len(fresh)
        self.skipped += parsed.skipped
        self.repeated += repeated
        token = parsed.next_token
        page = ListingPage(
            number=self.pages,
            items=tuple(fresh),
            skipped=parsed.skipped,
            repeated=repeated,
            has_next=token is not None,
        )
        self._log.debug(
            "listing_page",
            page=self.pages,
            items=len(fresh),
            repeated=repeated,
            skipped=parsed.skipped,
        )
        if token is None:
            self._finish(ListingStop.END)
        elif parsed.items and not fresh:
            self._finish(ListingStop.ALL_SEEN)
        elif token in self._tokens:
            self._finish(ListingStop.REPEATED_TOKEN)
        else:
            self._tokens.add(token)
            self._cursor = token
        return page

    def _finish(self, stop: ListingStop) -> None:
        self._done = True
        self.stop = stop
        if stop.loop_guard:
            self._log.warning("listing_loop_guard", stop=stop.value, page=self.pages)

    def _end(self, stop: ListingStop) -> ListingPage:
        self._finish(stop)
        self._log.warning("listing_page_limit", pages=self.pages)
        raise StopIteration
