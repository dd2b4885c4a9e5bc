"""What is on disk is never taken on trust: wrong files, shared paths, seed rows, failures.

Each test drives ``ImageService.download_images`` (or the default handler)
against the real emulator; the catalogue is edited directly only to set up
the states an older version, the seed app or an untrusted listing leaves.
"""

from __future__ import annotations

import errno
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from veo3dl import (
    DownloadJob,
    DownloadPool,
    FlowAccess,
    FlowClient,
    ImageService,
    ImageStore,
    RetryPolicy,
)
from veo3dl._download_run import DownloadRun
from veo3dl._paths import digest
from veo3dl.exceptions import StorageError
from veo3dl.testing import Fault, FlowEmulator

pytestmark = [pytest.mark.timeout(120), pytest.mark.usefixtures("no_leftover_processes")]
FAST = RetryPolicy(attempts=3, backoff=0.01, backoff_max=0.05, retry_after_max=2.0)
TABLE = "veo3_image_generations"


@pytest.fixture
def flow() -> Iterator[FlowEmulator]:
    with FlowEmulator(items=8, videos=1) as emulator:
        yield emulator
        assert emulator.errors == []


def make_service(flow: FlowEmulator, tmp_path: Path, **kwargs: object) -> ImageService:
    client = FlowClient(flow.credentials, labs_url=flow.labs_url, api_url=flow.api_url, retry=FAST)
    return ImageService(
        client,
        ImageStore(tmp_path / "catalogue.db"),
        storage_root=kwargs.pop("storage_root", tmp_path / "media"),  # type: ignore[arg-type]
        workers=1,
        slots_per_worker=2,
        **kwargs,  # type: ignore[arg-type]
    )


def synced(flow: FlowEmulator, tmp_path: Path, *, downloaded: bool = False) -> ImageService:
    """A service whose catalogue holds the emulator's library (and, *downloaded*, its files)."""
    service = make_service(flow, tmp_path)
    service.sync_metadata("me")
    if downloaded:
        service.download_images("me")
    return service


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def edit(service: ImageService, sql: str, params: tuple[object, ...]) -> None:
    service.store.db.execute(sql, params)
    service.store.db.conn.commit()


def images(flow: FlowEmulator) -> list:  # type: ignore[type-arg]
    return [item for item in flow.items if item.media_type == "IMAGE"]


def files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def assert_own_file(service: ImageService, flow: FlowEmulator, name: str) -> Path:
    row = service.store.get("me", name)
    assert row is not None and row.local_path, name
    path = service.storage_root / row.local_path
    assert path.read_bytes() == flow.content(name), name
    assert row.sha256 == sha(flow.content(name)) and row.size_bytes == len(flow.content(name))
    return path


def same_extension_pair(flow: FlowEmulator) -> tuple:  # type: ignore[type-arg]
    a = images(flow)[0]
    return a, next(i for i in images(flow)[1:] if i.extension == a.extension)


def same_day_and_key(service: ImageService, source, target) -> None:  # type: ignore[no-untyped-def]
    """Make *target*'s row carry *source*'s media key and creation day (an untrusted listing)."""
    edit(
        service,
        f"UPDATE {TABLE} SET media_key = ?, created_at = ? WHERE name = ?",
        (source.media_key, source.create_time.strftime("%Y-%m-%dT%H:%M:%SZ"), target.name),
    )


# ------------------------------------------------------- H1: wrong file at the path


def test_another_items_file_at_the_recorded_path_is_fetched_again(
    flow: FlowEmulator, tmp_path: Path
) -> None:
    service = synced(flow, tmp_path, downloaded=True)
    a = images(flow)[0]
    other = next(i for i in images(flow)[1:] if i.extension == a.extension and i.size != a.size)
    path = service.storage_root / service.store.get("me", a.name).local_path
    path.write_bytes(flow.content(other.name))  # whole, right format, wrong bytes
    flow.reset_counters()
    report = service.download_images("me")
    assert report.adopted == 0 and report.downloaded == 1 and report.ok
    assert flow.requests("media", name=a.name) == 1 and flow.requests("media") == 1
    assert assert_own_file(service, flow, a.name) == path  # replaced in place
    assert_own_file(service, flow, other.name)
    assert not list(service.storage_root.rglob("*.part"))


def test_a_file_with_the_recorded_bytes_is_adopted_at_the_destination(
    flow: FlowEmulator, tmp_path: Path
) -> None:
    service = synced(flow, tmp_path, downloaded=True)
    a = images(flow)[0]
    row = service.store.get("me", a.name)
    edit(service, f"UPDATE {TABLE} SET local_path = ? WHERE name = ?", ("moved/a.bin", a.name))
    flow.reset_counters()
    report = service.download_images("me")
    assert report.adopted == 1 and report.downloaded == 0 and flow.requests() == 0
    assert service.store.get("me", a.name).local_path == row.local_path
    assert_own_file(service, flow, a.name)


# ------------------------------------------------------------- H2: shared paths


def test_two_items_with_one_media_key_and_day_get_a_file_each(
    flow: FlowEmulator, tmp_path: Path
) -> None:
    service = synced(flow, tmp_path)
    a, b = same_extension_pair(flow)
    same_day_and_key(service, a, b)
    report = service.download_images("me")
    assert report.downloaded == len(flow.items) and report.ok
    paths = {assert_own_file(service, flow, item.name) for item in (a, b)}
    assert len(paths) == 2
    day = a.create_time.strftime("%Y-%m-%d")
    for item in (a, b):
        assert service.store.get("me", item.name).local_path.startswith(
            f"{day}/{a.media_key}~{digest(item.name)}."
        )
    assert len(files_under(service.storage_root)) == len(flow.items)
    flow.reset_counters()
    again = service.download_images("me")
    assert again.skipped == len(flow.items) and flow.requests() == 0


def test_keys_differing_only_in_case_get_a_file_each(flow: FlowEmulator, tmp_path: Path) -> None:
    service = synced(flow, tmp_path)
    a, b = same_extension_pair(flow)
    same_day_and_key(service, a, b)
    edit(service, f"UPDATE {TABLE} SET media_key = ? WHERE name = ?", (a.media_key.upper(), b.name))
    service.download_images("me")
    paths = [service.store.get("me", i.name).local_path for i in (a, b)]
    assert paths[0].casefold() != paths[1].casefold()
    for item in (a, b):
        assert_own_file(service, flow, item.name)


def test_a_newcomer_never_takes_a_recorded_file(flow: FlowEmulator, tmp_path: Path) -> None:
    service = synced(flow, tmp_path)
    a, b = same_extension_pair(flow)
    service.download_images("me", names=[a.name])
    recorded = service.store.get("me", a.name).local_path
    same_day_and_key(service, a, b)
    report = service.download_images("me")
    assert report.ok and report.skipped == 1
    assert service.store.get("me", a.name).local_path == recorded
    assert_own_file(service, flow, a.name)
    assert service.store.get("me", b.name).local_path != recorded
    assert_own_file(service, flow, b.name)


def test_two_rows_recording_one_file_are_told_apart_by_their_bytes(
    flow: FlowEmulator, tmp_path: Path
) -> None:
    # What an older version left: b's download replaced a's file, both rows record it.
    service = synced(flow, tmp_path, downloaded=True)
    a, b = images(flow)[0], images(flow)[1]
    a_row = service.store.get("me", a.name)
    (service.storage_root / a_row.local_path).write_bytes(flow.content(b.name))
    edit(
        service,
        f"UPDATE {TABLE} SET local_path = ?, size_bytes = ? WHERE name = ?",
        (a_row.local_path, b.size, b.name),
    )
    edit(service, f"UPDATE {TABLE} SET size_bytes = ? WHERE name = ?", (b.size, a.name))
    flow.reset_counters()
    report = service.download_images("me")
    # The sizes match; the hashes say the file is b's, so only a is fetched, to a file of its own.
    assert report.ok and flow.requests("media") == 1 and flow.requests("media", name=a.name) == 1
    for item in (a, b):
        assert_own_file(service, flow, item.name)
    assert service.store.get("me", a.name).local_path != service.store.get("me", b.name).local_path


def test_the_handler_never_replaces_another_whole_file(flow: FlowEmulator, tmp_path: Path) -> None:
    client = FlowClient(flow.credentials, labs_url=flow.labs_url, api_url=flow.api_url)
    item, other = images(flow)[0], images(flow)[1]
    target = tmp_path / "x" / f"file.{item.extension}"
    target.parent.mkdir()
    target.write_bytes(flow.content(other.name))
    common = {"name": item.name, "destination": "x/file", "storage_root": str(tmp_path)}
    common["access"] = FlowAccess.of(client)  # type: ignore[assignment]
    with DownloadPool(1) as pool:
        refused = pool.submit(DownloadJob(**common)).result(timeout=60)  # type: ignore[arg-type]
        assert not refused.ok and refused.error_kind == "StorageError"
        assert "not this item's file" in (refused.error_message or "")
        assert target.read_bytes() == flow.content(other.name)
        assert not list(tmp_path.rglob("*.part"))
        allowed = DownloadJob(**common, replaceable=(f"x/file.{item.extension}",))  # type: ignore[arg-type]
        replaced = pool.submit(allowed).result(timeout=60)
    assert replaced.ok and target.read_bytes() == flow.content(item.name)
    client.close()


# ------------------------------------------------------------------ M1: seed rows


def test_seed_rows_are_checked_before_they_are_recorded(flow: FlowEmulator, tmp_path: Path) -> None:
    service = synced(flow, tmp_path)
    html, half, good = images(flow)[:3]
    root = service.storage_root
    root.mkdir()
    (root / "old_html.png").write_bytes(b"<!doctype html><html>Error 403</html>")
    (root / "old_half.bin").write_bytes(flow.content(half.name)[: half.size // 2])
    (root / "old_good.bin").write_bytes(flow.content(good.name))
    for item, name in ((html, "old_html.png"), (half, "old_half.bin"), (good, "old_good.bin")):
        edit(
            service,
            f"UPDATE {TABLE} SET local_path = ?, size_bytes = NULL WHERE name = ?",
            (name, item.name),
        )
    report = service.download_images("me")
    assert report.ok and report.skipped == 1 and report.downloaded == len(flow.items) - 1
    assert flow.requests("media", name=good.name) == 0
    assert service.store.get("me", good.name).local_path == "old_good.bin"
    assert service.store.get("me", good.name).mime_type == good.mime_type
    for item in (html, half, good):
        assert_own_file(service, flow, item.name)
    # The old files stay where they were: nothing replaced them.
    assert (root / "old_html.png").read_bytes().startswith(b"<!doctype")
    assert (root / "old_half.bin").stat().st_size == half.size // 2
    flow.reset_counters()
    assert service.download_images("me").skipped == len(flow.items) and flow.requests() == 0


# ----------------------------------------------- failed re-downloads and records


def test_a_failed_redownload_keeps_a_file_recorded_outside_the_root(
    flow: FlowEmulator, tmp_path: Path
) -> None:
    """A seed-app path on another disk may be out of reach only for now (not mounted)."""
    service = synced(flow, tmp_path)
    item = images(flow)[0]
    disk = tmp_path / "external"
    disk.mkdir()
    kept = disk / "favourite.png"
    kept.write_bytes(flow.content(item.name))
    edit(
        service,
        f"UPDATE {TABLE} SET local_path = ?, size_bytes = ?, sha256 = ?, mime_type = ?, "
        "downloaded_at = '2025-10-30T00:00:00Z' WHERE name = ?",
        (str(kept), item.size, sha(flow.content(item.name)), item.mime_type, item.name),
    )
    before = service.store.get("me", item.name)
    os.rename(disk, tmp_path / "unmounted")
    flow.inject(Fault.status(503), endpoint="media", times=None)
    flow.inject(Fault.status(503), endpoint="fife", times=None)
    report = service.download_images("me", names=[item.name])
    assert report.failed == 1
    after = service.store.get("me", item.name)
    assert (after.local_path, after.size_bytes, after.sha256, after.mime_type) == (
        before.local_path,
        before.size_bytes,
        before.sha256,
        before.mime_type,
    )
    assert after.downloaded_at == before.downloaded_at
    assert after.last_error and after.attempts > before.attempts
    os.rename(tmp_path / "unmounted", disk)
    flow.clear_faults()
    flow.reset_counters()
    again = service.download_images("me", names=[item.name], retry_failed=True)
    assert again.skipped == 1 and flow.requests() == 0


@pytest.mark.parametrize("damage", ["deleted", "replaced"])
def test_a_failed_redownload_of_a_file_under_the_root_forgets_it(
    flow: FlowEmulator, tmp_path: Path, damage: str
) -> None:
    """The catalogue never claims a file that is not there, nor a stray file as the item's."""
    service = synced(flow, tmp_path, downloaded=True)
    a = images(flow)[0]
    other = next(i for i in images(flow)[1:] if i.extension == a.extension and i.size != a.size)
    path = assert_own_file(service, flow, a.name)
    if damage == "deleted":
        path.unlink()
    else:
        path.write_bytes(flow.content(other.name))  # whole media, but another item's
    flow.inject(Fault.status(503), endpoint="media", times=None)
    flow.inject(Fault.status(503), endpoint="fife", times=None)
    report = service.download_images("me", names=[a.name])
    assert report.failed == 1
    row = service.store.get("me", a.name)
    assert (row.local_path, row.size_bytes, row.downloaded_at) == (None, None, None)
    assert row.sha256 == sha(flow.content(a.name))  # still known: which bytes are a's
    flow.clear_faults()
    again = service.download_images("me", names=[a.name], retry_failed=True)
    assert again.adopted == 0 and again.downloaded == 1
    assert assert_own_file(service, flow, a.name) == path


@pytest.mark.parametrize("state", ["missing", "empty"])
def test_a_missing_or_empty_root_with_recorded_files_is_refused(
    flow: FlowEmulator, tmp_path: Path, state: str
) -> None:
    service = synced(flow, tmp_path, downloaded=True)
    root = service.storage_root
    root.rename(tmp_path / "elsewhere")
    if state == "empty":
        root.mkdir()
    flow.reset_counters()
    with pytest.raises(StorageError) as caught:
        service.download_images("me")
    assert str(root) in str(caught.value) and "mounted" in str(caught.value)
    assert caught.value.path == str(root)
    assert flow.requests() == 0 and root.exists() == (state == "empty")
    rows = service.store.items("me")
    assert all(row.local_path for row in rows)
    # Files really gone: a file in the folder says so, and everything comes again.
    root.mkdir(exist_ok=True)
    (root / ".keep").touch()
    assert service.download_images("me").downloaded == len(flow.items)


def test_a_fresh_root_is_created(flow: FlowEmulator, tmp_path: Path) -> None:
    service = make_service(flow, tmp_path, storage_root=tmp_path / "new" / "media")
    service.sync_metadata("me")
    assert service.download_images("me").downloaded == len(flow.items)


# ------------------------------------------------------- L1: OS errors per item


def test_an_unreadable_recorded_path_fails_that_item_only(
    flow: FlowEmulator, tmp_path: Path
) -> None:
    service = synced(flow, tmp_path)
    item = images(flow)[0]
    service.storage_root.mkdir()
    (service.storage_root / ".keep").touch()
    # A seed-app path the OS refuses to look at (ENAMETOOLONG; EACCES for a non-root user).
    edit(
        service,
        f"UPDATE {TABLE} SET local_path = ?, size_bytes = NULL WHERE name = ?",
        ("x" * 300 + ".png", item.name),
    )
    report = service.download_images("me")
    assert report.downloaded == len(flow.items) - 1
    [failure] = report.failures
    assert failure.name == item.name and failure.kind == "StorageError"
    assert os.strerror(errno.ENAMETOOLONG) in failure.message


# --------------------------------------------------- L4: the media type is checked


@pytest.mark.parametrize("claimed", ["VIDEO", "IMAGE"])
def test_bytes_of_the_other_media_type_are_refused(
    flow: FlowEmulator, tmp_path: Path, claimed: str
) -> None:
    service = synced(flow, tmp_path)
    item = next(i for i in flow.items if i.media_type != claimed)
    edit(service, f"UPDATE {TABLE} SET media_type = ? WHERE name = ?", (claimed, item.name))
    report = service.download_images("me", names=[item.name])
    [failure] = report.failures
    assert failure.kind == "IntegrityError" and "the item is" in failure.message
    row = service.store.get("me", item.name)
    assert row.local_path is None and row.last_error
    assert files_under(service.storage_root) == []


def test_a_failure_never_forgets_what_another_run_recorded_meanwhile(
    flow: FlowEmulator, tmp_path: Path
) -> None:
    """Run B finds X's file gone; run A then downloads X; B's failure must not erase A's record."""
    service = synced(flow, tmp_path, downloaded=True)
    x = images(flow)[0]
    path = assert_own_file(service, flow, x.name)
    path.unlink()
    run_b = DownloadRun(
        service.store,
        "me",
        storage_root=service.storage_root,
        template=service.path_template,
        access=None,
        on_progress=None,
        retry_failed=False,
    )
    run_b.plan(service.store.items("me", names=[x.name]))
    assert [job.name for job in run_b.jobs] == [x.name]  # B will fetch X again
    edit(  # meanwhile run A downloads X and records it, a second later
        service,
        f"UPDATE {TABLE} SET downloaded_at = '2999-01-01T00:00:00Z' WHERE name = ?",
        (x.name,),
    )
    path.write_bytes(flow.content(x.name))
    run_b._fail(x.name, StorageError("refused", item=x.name))
    run_b._flush()
    row = service.store.get("me", x.name)
    assert row.local_path and row.last_error  # A's file stays recorded; B's failure is noted
    assert assert_own_file(service, flow, x.name) == path


def test_an_item_of_unknown_media_type_takes_either_kind(
    flow: FlowEmulator, tmp_path: Path
) -> None:
    """A seed-app row has no media_type: its video is not refused as 'not an image'."""
    service = synced(flow, tmp_path)
    edit(service, f"UPDATE {TABLE} SET media_type = NULL", ())
    report = service.download_images("me")
    assert report.ok and report.downloaded == len(flow.items)
    video = next(i for i in flow.items if i.media_type == "VIDEO")
    assert assert_own_file(service, flow, video.name).suffix == ".mp4"


def test_a_recorded_path_holding_nul_fails_that_item_only(
    flow: FlowEmulator, tmp_path: Path
) -> None:
    service = synced(flow, tmp_path, downloaded=True)
    bad = images(flow)[0]
    edit(service, f"UPDATE {TABLE} SET local_path = ? WHERE name = ?", ("a\x00b.png", bad.name))
    report = service.download_images("me")
    assert report.failed == 1 and report.skipped == len(flow.items) - 1
    assert "NUL" in report.failures[0].message and report.failures[0].name == bad.name
