"""The download pipeline end to end: ImageService.download_images through the pool."""

from __future__ import annotations

import hashlib
import pickle
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from veo3dl import (
    Credentials,
    DownloadJob,
    DownloadPool,
    DownloadResult,
    FlowAccess,
    FlowClient,
    ImageService,
    ImageStore,
    RetryPolicy,
)
from veo3dl.testing import Fault, FlowEmulator

pytestmark = [pytest.mark.timeout(120), pytest.mark.usefixtures("no_leftover_processes")]
FAST = RetryPolicy(attempts=3, backoff=0.01, backoff_max=0.05, retry_after_max=2.0)


@pytest.fixture
def flow() -> Iterator[FlowEmulator]:
    with FlowEmulator() as emulator:
        yield emulator
        assert emulator.errors == []
        assert emulator.deviations == []


def make_service(
    flow: FlowEmulator, tmp_path: Path, credentials: Credentials | None = None, **kwargs
) -> ImageService:
    client = FlowClient(
        credentials or flow.credentials, labs_url=flow.labs_url, api_url=flow.api_url, retry=FAST
    )
    kwargs.setdefault("workers", 2)
    kwargs.setdefault("slots_per_worker", 4)
    return ImageService(
        client, ImageStore(tmp_path / "catalogue.db"), storage_root=tmp_path / "media", **kwargs
    )


def files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def assert_recorded_exactly(service: ImageService, flow: FlowEmulator, names: set[str]) -> None:
    root = service.storage_root
    for item in flow.items:
        row = service.store.get("me", item.name)
        if item.name in names:
            assert row.local_path, item.name
            path = root / row.local_path
            assert path.read_bytes() == flow.content(item.name), item.name
            assert (
                row.size_bytes == item.size
                and row.sha256 == hashlib.sha256(flow.content(item.name)).hexdigest()
            )
            assert row.mime_type == item.mime_type and row.downloaded_at is not None
            assert row.local_path.startswith(item.create_time.strftime("%Y-%m-%d/"))
            assert (
                row.local_path == f"{item.create_time:%Y-%m-%d}/{item.media_key}.{item.extension}"
            )
        else:
            assert row.local_path is None and row.last_error, item.name
    assert len(files_under(root)) == len(names)
    assert not list(root.rglob("*.part"))


def test_all_42_land_byte_exact_in_their_date_folders(flow: FlowEmulator, tmp_path: Path) -> None:
    service = make_service(flow, tmp_path)
    service.sync_metadata("me")
    progress = []
    report = service.download_images("me", on_progress=progress.append)
    assert (report.downloaded, report.failed, report.skipped) == (42, 0, 0)
    assert report.bytes == sum(i.size for i in flow.items)
    assert [p.done for p in progress] == list(range(1, 43))
    assert progress[-1].total == 42 and progress[-1].bytes == report.bytes
    assert_recorded_exactly(service, flow, {i.name for i in flow.items})
    videos = [i for i in flow.items if i.media_type == "VIDEO"]
    assert videos and all(
        service.store.get("me", v.name).local_path.endswith(".mp4") for v in videos
    )
    with ImageStore(tmp_path / "catalogue.db") as store:
        assert store.counts("me").downloaded == 42


def test_faults_recoverable_and_not(flow: FlowEmulator, tmp_path: Path) -> None:
    items = flow.items
    api_down = [items[0].name, items[1].name, items[2].name]
    expired_and_api_down = items[3].name
    html_and_api_down = items[4].name
    for name in [*api_down, expired_and_api_down, html_and_api_down]:
        flow.inject(Fault.status(503), endpoint="media", name=name, times=None)
    flow.inject(Fault.expired_fife(), endpoint="listing", name=expired_and_api_down, times=None)
    flow.inject(Fault.html(), endpoint="fife", name=html_and_api_down, times=None)
    flow.inject(Fault.rate_limited(retry_after=1), endpoint="media", name=items[5].name, times=1)
    flow.inject(Fault.truncate(), endpoint="media", name=items[6].name, times=1)
    creds = Credentials(cookie=flow.credentials.cookie, api_key=flow.credentials.api_key)
    service = make_service(flow, tmp_path, creds)
    service.sync_metadata("me")

    def expire_midway(progress) -> None:
        if progress.done == 15:
            flow.expire_tokens()

    report = service.download_images("me", on_progress=expire_midway)
    failed = {f.name: f for f in report.failures}
    assert set(failed) == {expired_and_api_down, html_and_api_down}
    assert failed[expired_and_api_down].kind == "UrlExpired"
    assert (
        failed[html_and_api_down].kind == "IntegrityError"
        and "HTML" in failed[html_and_api_down].message
    )
    assert report.downloaded == 40 and report.from_fallback == 3
    assert_recorded_exactly(service, flow, {i.name for i in items} - set(failed))
    assert flow.requests("fife", name=expired_and_api_down) == 0  # an expired URL costs no request
    assert flow.requests("session") == 2  # one mint, one renewal for the whole batch
    flow.reset_counters()
    held_back = service.download_images("me")
    assert (held_back.skipped, held_back.not_retried, held_back.failed) == (40, 2, 0)
    assert flow.requests() == 0  # failed items are left alone unless asked
    again = service.download_images("me", retry_failed=True)
    assert again.skipped == 40 and again.downloaded == 0
    # Only the two failures are tried again: 3 API attempts each, and the HTML
    # item's signed URL once (the expired one costs nothing).
    assert (flow.requests("media"), flow.requests("fife")) == (2 * FAST.attempts, 1)
    assert flow.requests("media", name=items[10].name) == 0


def test_second_run_makes_no_request(flow: FlowEmulator, tmp_path: Path) -> None:
    service = make_service(flow, tmp_path)
    service.sync_metadata("me")
    service.download_images("me")
    flow.reset_counters()
    report = service.download_images("me")
    assert report.skipped == 42 and report.downloaded == 0
    assert flow.requests() == 0


def test_missing_or_wrong_file_is_fetched_again(flow: FlowEmulator, tmp_path: Path) -> None:
    service = make_service(flow, tmp_path)
    service.sync_metadata("me")
    service.download_images("me")
    gone, wrong = flow.items[0], flow.items[1]
    (service.storage_root / service.store.get("me", gone.name).local_path).unlink()
    (service.storage_root / service.store.get("me", wrong.name).local_path).write_bytes(b"short")
    flow.reset_counters()
    report = service.download_images("me")
    assert report.downloaded == 2 and report.skipped == 40
    assert flow.requests("media") == 2
    assert_recorded_exactly(service, flow, {i.name for i in flow.items})


def test_file_written_but_not_recorded_is_adopted_without_a_request(
    flow: FlowEmulator, tmp_path: Path
) -> None:
    service = make_service(flow, tmp_path)
    service.sync_metadata("me")
    item = flow.items[2]
    target = (
        service.storage_root / f"{item.create_time:%Y-%m-%d}" / f"{item.media_key}.{item.extension}"
    )
    target.parent.mkdir(parents=True)
    target.write_bytes(flow.content(item.name))
    truncated = flow.items[3]
    half = (
        service.storage_root
        / f"{truncated.create_time:%Y-%m-%d}"
        / f"{truncated.media_key}.{truncated.extension}"
    )
    half.parent.mkdir(parents=True, exist_ok=True)
    half.write_bytes(flow.content(truncated.name)[: truncated.size // 2])
    report = service.download_images("me")
    assert report.adopted == 1 and report.downloaded == 41
    assert flow.requests("media", name=item.name) == 0
    assert flow.requests("media", name=truncated.name) == 1  # a half file is not adopted
    assert_recorded_exactly(service, flow, {i.name for i in flow.items})


def test_stale_part_files_are_cleaned(flow: FlowEmulator, tmp_path: Path) -> None:
    service = make_service(flow, tmp_path)
    service.sync_metadata("me")
    folder = service.storage_root / "2025-10-29"
    folder.mkdir(parents=True)
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    stale = folder / f".abc.download.{int(dead.stdout)}.0badf00d.part"
    stale.write_bytes(b"half")
    service.download_images("me")
    assert not stale.exists()


def test_names_subset_and_unknown_names(flow: FlowEmulator, tmp_path: Path) -> None:
    service = make_service(flow, tmp_path)
    service.sync_metadata("me")
    wanted = [flow.items[5].name, flow.items[9].name]
    report = service.download_images("me", names=[*wanted, "CAMaNotThere"])
    assert report.downloaded == 2
    assert [(f.name, f.kind) for f in report.failures] == [("CAMaNotThere", "NotFoundError")]
    assert flow.requests("media") == 2


def test_custom_template(flow: FlowEmulator, tmp_path: Path) -> None:
    service = make_service(flow, tmp_path, path_template="{media_type}/{year}/{month}/{name}.{ext}")
    service.sync_metadata("me")
    service.download_images("me", names=[flow.items[0].name])
    item = flow.items[0]
    row = service.store.get("me", item.name)
    assert row.local_path.startswith(
        f"{item.media_type.lower()}/{item.create_time:%Y}/{item.create_time:%m}/"
    )
    assert (service.storage_root / row.local_path).read_bytes() == flow.content(item.name)


def test_a_users_pool_is_used_and_left_running(flow: FlowEmulator, tmp_path: Path) -> None:
    with DownloadPool(2, slots_per_worker=2) as pool:
        service = make_service(flow, tmp_path, pool=pool)
        service.sync_metadata("me")
        assert service.download_images("me").downloaded == 42
        assert pool.status().completed == 42 and not pool.status().closed


def test_hostile_media_key_stays_inside_the_root(flow: FlowEmulator, tmp_path: Path) -> None:
    service = make_service(flow, tmp_path)
    service.sync_metadata("me")
    item = flow.items[0]
    service.store.db.execute(
        "UPDATE veo3_image_generations SET media_key = ? WHERE name = ?",
        ("../../../../etc/evil", item.name),
    )
    report = service.download_images("me", names=[item.name])
    assert report.downloaded == 1
    row = service.store.get("me", item.name)
    path = (service.storage_root / row.local_path).resolve()
    assert path.is_relative_to(service.storage_root.resolve())
    assert ".." not in Path(row.local_path).parts and len(Path(row.local_path).parts) == 2


def test_jobs_and_results_pickle_without_secrets(flow: FlowEmulator) -> None:
    client = FlowClient(flow.credentials, labs_url=flow.labs_url, api_url=flow.api_url)
    job = DownloadJob(
        name="CAMa1",
        destination="2025-10-29/k",
        storage_root="/tmp/x",
        fife_url=flow.fife_url(flow.items[0].name),
        access=FlowAccess.of(client),
    )
    result = DownloadResult(
        name="CAMa1", ok=True, local_path="2025-10-29/k.png", size=3, sha256="0" * 64
    )
    assert pickle.loads(pickle.dumps(job)) == job
    assert pickle.loads(pickle.dumps(result)) == result
    text = repr(job) + repr(result) + str(job)
    for secret in flow.credentials.secrets():
        assert secret not in text
    assert "Signature=[REDACTED]" in repr(job)
    client.close()


def test_the_pools_default_handler_downloads_jobs(flow: FlowEmulator, tmp_path: Path) -> None:
    client = FlowClient(flow.credentials, labs_url=flow.labs_url, api_url=flow.api_url)
    item = flow.items[0]
    job = DownloadJob(
        name=item.name,
        destination="one/file",
        storage_root=str(tmp_path),
        access=FlowAccess.of(client),
    )
    fife_only = DownloadJob(
        name=flow.items[1].name,
        destination="two/file",
        storage_root=str(tmp_path),
        fife_url=flow.fife_url(flow.items[1].name),
    )
    with DownloadPool(1) as pool:
        first, second = (
            pool.submit(job).result(timeout=60),
            pool.submit(fife_only).result(timeout=60),
        )
    assert (
        first.ok
        and first.source == "api"
        and (tmp_path / first.local_path).read_bytes() == flow.content(item.name)
    )
    assert second.ok and second.source == "fife"
    client.close()


KILL_SCRIPT = """
import sys
from veo3dl import Credentials, FlowClient, ImageService, ImageStore
labs, api, cookie, key, root = sys.argv[1:6]
client = FlowClient(Credentials(cookie=cookie, api_key=key), labs_url=labs, api_url=api)
service = ImageService(client, ImageStore(root + "/catalogue.db"), storage_root=root + "/media", workers=2, slots_per_worker=2)
service.sync_metadata("me")
print("synced", flush=True)
report = service.download_images("me")
print(report.downloaded, flush=True)
"""


def test_killed_parent_then_rerun_completes_and_fetches_nothing_twice(tmp_path: Path) -> None:
    with FlowEmulator(latency=0.05) as flow:
        creds = flow.credentials
        args = [flow.labs_url, flow.api_url, creds.cookie, creds.api_key, str(tmp_path)]
        proc = subprocess.Popen(
            [sys.executable, "-c", KILL_SCRIPT, *args], stdout=subprocess.PIPE, text=True
        )
        assert proc.stdout.readline().strip() == "synced"
        deadline = time.monotonic() + 60
        while len(list((tmp_path / "media").rglob("*.*"))) < 12:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        workers = [p.pid for p in __import__("psutil").Process(proc.pid).children(recursive=True)]
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        proc.stdout.close()
        from conftest import wait_until_gone

        assert wait_until_gone(workers) == []
        first_run = {i.name: flow.requests("media", name=i.name) for i in flow.items}
        service = make_service(flow, tmp_path)
        report = service.download_images("me")
        assert report.downloaded + report.adopted + report.skipped == 42 and report.ok
        done_before = {p.name for p in files_under(tmp_path / "media")}
        assert done_before
        for item in flow.items:
            total = flow.requests("media", name=item.name)
            assert total <= first_run[item.name] + (first_run[item.name] == 0 or 1), item.name
        refetched = sum(
            1
            for i in flow.items
            if first_run[i.name] and flow.requests("media", name=i.name) > first_run[i.name]
        )
        assert refetched <= 4  # only what was in flight (2 workers x 2 slots) when the parent died
        assert_recorded_exactly(service, flow, {i.name for i in flow.items})


def test_progress_counts_only_the_pools_work(flow: FlowEmulator, tmp_path: Path) -> None:
    service = make_service(flow, tmp_path)
    service.sync_metadata("me")
    progress = []
    report = service.download_images(
        "me", names=["CAMa-nope", "CAMa-nope-2", flow.items[0].name], on_progress=progress.append
    )
    assert [(p.done, p.total, p.failed) for p in progress] == [(1, 1, 0)]
    assert report.failed == 2 and report.downloaded == 1
