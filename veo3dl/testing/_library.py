"""The emulated user's media library: deterministic items from a seed.

Everything about an item (its name, key, create time, size, file format,
prompt) follows from the emulator's seed and the item's position, so two
emulators with the same options hold identical libraries.  The library can
change while an emulator runs (items added, removed), as a real one does
between two syncs.
"""

from __future__ import annotations

import bisect
import random
import threading
import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta, timezone

import attrs

from veo3dl.exceptions import ConfigError
from veo3dl.testing._media import FORMATS, MediaBlob, make_blob, normalize_size

__all__ = ["EmulatedItem", "Library", "LibraryOptions"]

_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_IMAGE_FORMATS = ("png", "jpeg", "webp")
_IMAGE_SHAPES = ("userUploadedImage", "image")
_IMAGE_RATIOS = (
    "IMAGE_ASPECT_RATIO_LANDSCAPE",
    "IMAGE_ASPECT_RATIO_PORTRAIT",
    "IMAGE_ASPECT_RATIO_SQUARE",
)
_VIDEO_RATIOS = ("VIDEO_ASPECT_RATIO_LANDSCAPE", "VIDEO_ASPECT_RATIO_PORTRAIT")
_IMAGE_MODELS = ("IMAGEN_3_5", "IMAGEN_4", "R2I")
_VIDEO_MODELS = (
    "veo_3_1_t2v_fast_portrait_ultra",
    "veo_3_1_t2v_fast_ultra",
    "veo_3_0_t2v",
)
_SUBJECTS = ("a red fox", "a lighthouse", "an old tram", "a paper boat", "two astronauts")
_PLACES = ("in the snow", "at dusk", "on a rainy street", "under neon lights", "in a meadow")
_STYLES = ("cinematic", "watercolour", "35mm photo", "isometric", "studio lighting")


@attrs.frozen
class EmulatedItem:
    """One item of the emulated library, with everything a test may assert on.

    ``name`` is the canonical name (no whitespace); ``listing_name`` is the
    form the listing shows, which for a few items carries stray whitespace or
    a line break.  ``shape`` is the key holding the file in the media answer
    (``userUploadedImage``, ``image`` or ``video``); ``fife_in_listing`` says
    whether the listing gives this item a ``fifeUrl``.
    """

    name: str
    media_type: str
    media_key: str
    create_time: datetime
    mime_type: str
    extension: str
    size: int
    shape: str
    aspect_ratio: str
    prompt: str
    seed: int
    model: str
    workflow_id: str
    project_id: str | None
    listing_name: str
    fife_in_listing: bool
    format: str = attrs.field(repr=False)


@attrs.frozen
class LibraryOptions:
    """How the library is generated (see :class:`~veo3dl.testing.FlowEmulator`)."""

    items: int
    videos: int
    seed: int
    base_time: datetime
    days: int
    image_bytes: tuple[int, int]
    video_bytes: tuple[int, int]


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _make_name(rng: random.Random, video: bool, with_dollar: bool) -> str:
    body = "".join(rng.choice(_ALPHABET) for _ in range(rng.randint(36, 56)))
    if with_dollar:
        cut = rng.randint(4, len(body) - 4)
        body = body[:cut] + "$" + body[cut:]
    return ("CAUS" if video else "CAMa") + body


def _listing_form(name: str, index: int) -> str:
    # A few names come back padded, one with a line break inside: the
    # service's listing does that and clients must strip it.
    if index == 5:
        return name[:20] + "\r\n" + name[20:]
    if index % 11 == 3:
        return "  " + name
    if index % 11 == 8:
        return name + "\n"
    if index % 11 == 10:
        return "\t" + name + " "
    return name


class Library:
    """The items of the emulated library, safe to use from many threads."""

    def __init__(self, options: LibraryOptions) -> None:
        if not 0 <= options.videos <= options.items:
            raise ConfigError("videos must be between 0 and items")
        if options.days < 1:
            raise ConfigError("days must be at least 1")
        self._options = options
        self._lock = threading.Lock()
        self._items: dict[str, EmulatedItem] = {}
        self._by_key: dict[str, EmulatedItem] = {}
        self._blobs: dict[str, MediaBlob] = {}
        self._thumbs: dict[str, MediaBlob] = {}
        self._order: tuple[list[EmulatedItem], list[tuple[datetime, str]]] | None = None
        self._created = 0
        self._batches = 0
        rng = random.Random(f"{options.seed}:library")
        span = options.days * 86400
        if options.items > span:
            raise ConfigError("more items than seconds in the time window")
        offsets = sorted(rng.sample(range(span), options.items))
        video_at = set(rng.sample(range(options.items), options.videos))
        start = options.base_time - timedelta(seconds=span - 1)
        for index, offset in enumerate(offsets):
            self._create(rng, start + timedelta(seconds=offset), index in video_at)

    def _create(self, rng: random.Random, when: datetime, video: bool) -> EmulatedItem:
        index = self._created
        self._created += 1
        name = _make_name(rng, video, with_dollar=index % 5 == 4)
        while name in self._items:
            name = _make_name(rng, video, with_dollar=index % 5 == 4)
        if video:
            fmt, shape = "mp4", "video"
            size = rng.randint(*self._options.video_bytes)
            ratio, model = rng.choice(_VIDEO_RATIOS), rng.choice(_VIDEO_MODELS)
        else:
            fmt = _IMAGE_FORMATS[index % 3]
            shape = _IMAGE_SHAPES[(index // 3) % 2]
            size = rng.randint(*self._options.image_bytes)
            ratio, model = rng.choice(_IMAGE_RATIOS), rng.choice(_IMAGE_MODELS)
        prompt = f"{rng.choice(_SUBJECTS)} {rng.choice(_PLACES)}, {rng.choice(_STYLES)}"
        media_key, workflow_id, project_id = _uuid(rng), _uuid(rng), _uuid(rng)
        mime, extension = FORMATS[fmt]
        item = EmulatedItem(
            name=name,
            media_type="VIDEO" if video else "IMAGE",
            media_key=media_key,
            create_time=when.astimezone(timezone.utc),
            mime_type=mime,
            extension=extension,
            size=normalize_size(fmt, size),
            shape=shape,
            aspect_ratio=ratio,
            prompt=prompt,
            seed=rng.randint(1, 99_999),
            model=model,
            workflow_id=workflow_id,
            project_id=project_id if video else None,
            listing_name=_listing_form(name, index),
            fife_in_listing=index % 9 != 7,
            format=fmt,
        )
        self._items[name] = item
        self._by_key[media_key] = item
        self._order = None
        return item

    def _ascending(self) -> tuple[list[EmulatedItem], list[tuple[datetime, str]]]:
        # Sorted once per change of the library, not once per listing page.
        with self._lock:
            if self._order is None:
                items = sorted(self._items.values(), key=lambda it: (it.create_time, it.name))
                self._order = (items, [(it.create_time, it.name) for it in items])
            return self._order

    def snapshot(self) -> list[EmulatedItem]:
        """All items, newest first (by create time, then name)."""
        return self._ascending()[0][::-1]

    def page(
        self, before: tuple[datetime, str] | None, size: int, back: int = 0
    ) -> tuple[list[EmulatedItem], bool]:
        """Up to *size* items, newest first, and whether older ones remain.

        The page holds items strictly older than the position *before*
        (``(create_time, name)``; ``None`` for the newest), moved *back* items
        towards the newer end so that it repeats some of the page before.
        """
        items, keys = self._ascending()
        end = len(items) if before is None else bisect.bisect_left(keys, before)
        end = min(len(items), end + back)
        start = max(0, end - size)
        return items[start:end][::-1], start > 0

    def get(self, name: str) -> EmulatedItem | None:
        """The item called *name*, or ``None``."""
        with self._lock:
            return self._items.get(name)

    def by_media_key(self, media_key: str) -> EmulatedItem | None:
        """The item whose ``mediaKey`` is *media_key*, or ``None``."""
        with self._lock:
            return self._by_key.get(media_key)

    def blob(self, item: EmulatedItem) -> MediaBlob:
        """The file of *item* (built once, then reused)."""
        with self._lock:
            blob = self._blobs.get(item.name)
        if blob is None:
            # Built outside the lock: a PNG's CRC walks its whole padding.
            blob = make_blob(item.format, f"{self._options.seed}:{item.name}", item.size)
            with self._lock:
                blob = self._blobs.setdefault(item.name, blob)
        return blob

    def thumbnail(self, item: EmulatedItem) -> MediaBlob:
        """The still image a video's ``servingBaseUri`` points at."""
        with self._lock:
            blob = self._thumbs.get(item.name)
        if blob is None:
            blob = make_blob("png", f"{self._options.seed}:{item.name}:thumb", 6_000)
            with self._lock:
                blob = self._thumbs.setdefault(item.name, blob)
        return blob

    def add(self, count: int, videos: int = 0) -> list[EmulatedItem]:
        """Add *count* items (the first *videos* of them videos), newer than all others."""
        if count < 0 or not 0 <= videos <= count:
            raise ConfigError("need 0 <= videos <= count")
        with self._lock:
            self._batches += 1
            rng = random.Random(f"{self._options.seed}:added:{self._batches}")
            newest = max(
                (it.create_time for it in self._items.values()),
                default=self._options.base_time,
            )
            return [
                self._create(rng, newest + timedelta(minutes=1 + i), i < videos)
                for i in range(count)
            ]

    def remove(self, names: Iterable[str]) -> list[EmulatedItem]:
        """Remove the named items; unknown names are ignored.  Returns those removed."""
        removed = []
        with self._lock:
            for name in names:
                item = self._items.pop(name, None)
                if item is not None:
                    del self._by_key[item.media_key]
                    self._blobs.pop(name, None)
                    self._thumbs.pop(name, None)
                    self._order = None
                    removed.append(item)
        return removed
