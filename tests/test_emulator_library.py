"""The emulated library and account: deterministic, realistic, and secret-safe."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import attrs
import pytest

from veo3dl.testing import DEFAULT_BASE_TIME, EmulatedItem, FlowEmulator

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")


def test_default_library_shape() -> None:
    emulator = FlowEmulator()
    items = emulator.items
    assert len(items) == 42
    assert sum(item.media_type == "VIDEO" for item in items) == 6
    times = [item.create_time for item in items]
    assert times == sorted(times, reverse=True)
    assert len(set(times)) == 42
    assert all(t.tzinfo is not None and t.utcoffset() == timedelta(0) for t in times)
    assert max(times) <= DEFAULT_BASE_TIME
    assert min(times) > DEFAULT_BASE_TIME - timedelta(days=10)
    assert len({t.date() for t in times}) >= 5  # spread over the days, several a day


def test_names_keys_and_metadata() -> None:
    items = FlowEmulator(items=50, videos=10).items
    names = [item.name for item in items]
    assert len(set(names)) == 50
    for item in items:
        prefix = "CAUS" if item.media_type == "VIDEO" else "CAMa"
        assert item.name.startswith(prefix)
        assert 40 <= len(item.name) <= 62
        assert re.fullmatch(r"[A-Za-z0-9_\-$]+", item.name)
        assert re.sub(r"\s", "", item.listing_name) == item.name
        assert UUID.fullmatch(item.media_key)
        assert UUID.fullmatch(item.workflow_id)
        assert (item.project_id is not None) == (item.media_type == "VIDEO")
        assert item.prompt
        assert item.model
        assert item.seed > 0
        assert item.aspect_ratio.startswith(
            "VIDEO_ASPECT_RATIO_" if item.media_type == "VIDEO" else "IMAGE_ASPECT_RATIO_"
        )
    assert sum("$" in name for name in names) == 10  # about every fifth
    stray = [item.listing_name for item in items if item.listing_name != item.name]
    assert any(s != s.strip() for s in stray)
    assert sum("\n" in s.strip() for s in stray) == 1


def test_same_seed_same_library_other_seed_differs() -> None:
    one, two, other = FlowEmulator(seed=3), FlowEmulator(seed=3), FlowEmulator(seed=4)
    assert one.items == two.items
    assert one.items != other.items
    name = one.items[0].name
    assert one.content(name) == two.content(name)


def test_options_shape_the_library() -> None:
    base = datetime(2024, 1, 1, tzinfo=timezone.utc)
    emulator = FlowEmulator(items=30, videos=0, base_time=base, days=2, image_bytes=(2_000, 3_000))
    assert all(item.media_type == "IMAGE" for item in emulator.items)
    assert all(base - timedelta(days=2) < item.create_time <= base for item in emulator.items)
    assert all(2_000 <= item.size <= 3_100 for item in emulator.items)


def test_item_lookup_and_content() -> None:
    emulator = FlowEmulator(items=5, videos=1)
    item = emulator.items[2]
    assert emulator.item(item.name) is item or emulator.item(item.name) == item
    assert len(emulator.content(item.name)) == item.size
    assert emulator.blob(item.name).size == item.size
    with pytest.raises(KeyError):
        emulator.item("CAMa-no-such-item")
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        item.name = "x"  # type: ignore[misc]
    assert isinstance(item, EmulatedItem)


def test_add_and_remove_items() -> None:
    emulator = FlowEmulator(items=10, videos=2)
    newest = emulator.items[0].create_time
    added = emulator.add_items(3, videos=1)
    assert len(added) == 3
    assert added[0].media_type == "VIDEO"
    assert all(item.create_time > newest for item in added)
    assert emulator.items[:3] == sorted(added, key=lambda it: it.create_time, reverse=True)
    removed = emulator.remove_items([added[0].name, emulator.items[-1].name, "unknown"])
    assert len(removed) == 2
    assert len(emulator.items) == 11
    with pytest.raises(KeyError):
        emulator.content(added[0].name)


def test_bad_options_are_refused() -> None:
    with pytest.raises(ValueError):
        FlowEmulator(items=3, videos=4)
    with pytest.raises(ValueError):
        FlowEmulator(page_cap=0)
    with pytest.raises(ValueError):
        FlowEmulator(image_bytes=(10, 5))
    with pytest.raises(ValueError):
        FlowEmulator(token_calls=0)
    with pytest.raises(ValueError):
        FlowEmulator(base_time=datetime(2025, 1, 1))


def test_credentials_are_random_and_never_shown() -> None:
    one, two = FlowEmulator(items=1, videos=0), FlowEmulator(items=1, videos=0)
    creds = one.credentials
    assert creds.cookie is not None
    assert creds.bearer_token
    assert creds.api_key
    assert creds.cookie.startswith("__Secure-next-auth.session-token=")
    assert creds.bearer_token.startswith("ya29.")
    assert re.fullmatch(r"AIza[0-9A-Za-z_\-]{35}", creds.api_key)
    assert creds != two.credentials
    for text in (repr(one), str(one), repr(creds), repr(one._state), repr(one._service)):
        for secret in creds.secrets():
            assert secret not in text
            assert secret.split("=")[-1] not in text


def test_urls_need_a_started_emulator() -> None:
    emulator = FlowEmulator(items=1, videos=0)
    with pytest.raises(RuntimeError):
        _ = emulator.labs_url
    with emulator:
        for url in (emulator.labs_url, emulator.api_url, emulator.files_url):
            assert re.fullmatch(r"http://127\.0\.0\.1:\d+", url)
        assert len({emulator.labs_url, emulator.api_url, emulator.files_url}) == 3
        assert emulator.running
    assert not emulator.running
    with pytest.raises(RuntimeError):
        emulator.start()
