"""Chaos: the fault matrix, hostile input, and secrets that must never leak.

Each fault is applied to one item of a small library; the table says what must
come of it: success from the API, success through the signed URL, or a named
error on that item alone.  In every case no invalid file is recorded, the
other items download, and no secret appears in logs, reprs, errors, results
or the database.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import attrs
import invariants
import pytest

from veo3dl import (
    Credentials,
    FlowClient,
    ImageService,
    ImageStore,
    ProtocolError,
    RetryPolicy,
)
from veo3dl.testing import Fault, FlowEmulator

pytestmark = [pytest.mark.timeout(120), pytest.mark.usefixtures("no_leftover_processes")]
FAST = RetryPolicy(attempts=3, backoff=0.01, backoff_max=0.05, retry_after_max=1.0)
SIGNATURE = invariants.SIGNATURE
assert_no_secret = invariants.assert_no_secret
# The fixture captured_logs (conftest) collects every log line, at debug level.


@attrs.frozen
class Case:
    """One row of the fault matrix."""

    id: str
    setup: Callable[[FlowEmulator, str], None]
    outcome: str  # "api", "fife", or the name of the error on the item
    credentials: str = "full"  # "full" | "cookie+key" | "bearer+key"
    timeout: tuple[float, float] = (5.0, 2.0)
    before_sync: bool = False  # faults on what the listing hands out


def api(fault: Fault, times: int | None = 1) -> Callable[[FlowEmulator, str], None]:
    return lambda flow, name: flow.inject(fault, endpoint="media", name=name, times=times) and None


def api_down_and(
    fault: Fault | None, endpoint: str = "fife", times: int | None = None
) -> Callable[[FlowEmulator, str], None]:
    def setup(flow: FlowEmulator, name: str) -> None:
        flow.inject(Fault.status(503), endpoint="media", name=name, times=None)
        if fault is not None:
            flow.inject(fault, endpoint=endpoint, name=name, times=times)

    return setup


def expire_tokens(flow: FlowEmulator, name: str) -> None:
    flow.expire_tokens()


def stale_cookie(flow: FlowEmulator, name: str) -> None:
    flow.expire_tokens()
    flow.stale_cookie = True


MATRIX = [
    Case("500 once", api(Fault.status(500)), "api"),
    Case("503 once", api(Fault.status(503)), "api"),
    Case("503 always, signed URL works", api(Fault.status(503), None), "fife"),
    Case("429 with Retry-After", api(Fault.rate_limited(retry_after=1)), "api"),
    Case("429 always, signed URL works", api(Fault.rate_limited(retry_after=0.1), None), "fife"),
    Case("connection reset", api(Fault.reset()), "api"),
    Case("truncated body", api(Fault.truncate()), "api"),
    Case("HTML with 200 from the API", api(Fault.html(), None), "fife"),
    Case(
        "slow drip past the read timeout",
        api(Fault.drip(delay=1.5, chunk=256)),
        "api",
        timeout=(5.0, 0.5),
    ),
    Case("404: item gone from the API, signed URL works", api(Fault.status(404), None), "fife"),
    Case("bearer expired mid-run", expire_tokens, "api", credentials="cookie+key"),
    Case("stale cookie and an expired bearer", stale_cookie, "fife", credentials="full"),
    Case(
        "API down, signed URL truncated once: resumed",
        api_down_and(Fault.truncate(), times=1),
        "fife",
    ),
    Case("API down, signed URL reset once", api_down_and(Fault.reset(), times=1), "fife"),
    Case(
        "API down, short Content-Length on the signed URL",
        api_down_and(Fault.short_length()),
        "IntegrityError",
    ),
    Case(
        "API down, HTML with 200 from the signed URL", api_down_and(Fault.html()), "IntegrityError"
    ),
    Case(
        "API down, JSON with 200 from the signed URL",
        api_down_and(Fault.json_200()),
        "IntegrityError",
    ),
    Case(
        "API down, signed URL expired",
        api_down_and(Fault.expired_fife(), endpoint="listing"),
        "UrlExpired",
        before_sync=True,
    ),
    Case("404 everywhere", api_down_and(Fault.status(404)), "NotFoundError"),
    Case(
        "API down, signed URL drips past the timeout",
        api_down_and(Fault.drip(delay=1.5, chunk=256)),
        "TransportError",
        timeout=(5.0, 0.5),
    ),
]


def credentials_for(flow: FlowEmulator, kind: str) -> Credentials:
    creds = flow.credentials
    if kind == "cookie+key":
        return Credentials(cookie=creds.cookie, api_key=creds.api_key)
    if kind == "bearer+key":
        return Credentials(bearer_token=creds.bearer_token, api_key=creds.api_key)
    return creds


@pytest.mark.parametrize("case", MATRIX, ids=lambda case: case.id)
def test_fault_matrix(
    case: Case, chaos_seed: int, tmp_path: Path, captured_logs: list[str]
) -> None:
    with FlowEmulator(
        items=8,
        videos=1,
        seed=chaos_seed,
        image_bytes=(20_000, 60_000),
        video_bytes=(200_000, 300_000),
    ) as flow:
        target = next(i.name for i in flow.items[1:] if i.fife_in_listing)
        secrets = flow.credentials.secrets()
        client = FlowClient(
            credentials_for(flow, case.credentials),
            labs_url=flow.labs_url,
            api_url=flow.api_url,
            retry=FAST,
            timeout=case.timeout,
        )
        store = ImageStore(tmp_path / "c.db")
        service = ImageService(
            client, store, storage_root=tmp_path / "media", workers=1, slots_per_worker=4
        )
        if case.before_sync:
            case.setup(flow, target)
        service.sync_metadata("p")
        if not case.before_sync:
            case.setup(flow, target)
        report = service.download_images("p")
        row = store.get("p", target)
        store.close()
        assert flow.requests("session") <= 2  # never one per worker or per item
        failures = {f.name: f for f in report.failures}
        if flow.stale_cookie:
            # The whole API is shut: items without a signed URL fail, clearly; the rest fall back.
            no_url = {i.name for i in flow.items if not i.fife_in_listing}
            assert set(failures) == no_url and {f.kind for f in failures.values()} <= {
                "LoginRequired"
            }
            failures.clear()
        if case.outcome in ("api", "fife"):
            assert not failures, failures
            assert row.local_path and (
                tmp_path / "media" / row.local_path
            ).read_bytes() == flow.content(target)
            assert (report.from_fallback > 0) == (case.outcome == "fife")
        else:
            [failure] = failures.values()
            assert (failure.name, failure.kind) == (target, case.outcome), failure
            assert row.local_path is None and case.outcome in (row.last_error or "")
            assert report.downloaded == len(flow.items) - 1
        recorded = invariants.check(tmp_path / "c.db", tmp_path / "media")
        for name, path in recorded.items():
            assert path.read_bytes() == flow.content(name)  # zero invalid files recorded
        everything = "\n".join(
            [
                *captured_logs,
                repr(report),
                str(report.failures),
                invariants.catalogue_text(tmp_path / "c.db"),
            ]
        )
        assert_no_secret(everything, secrets)
        assert not SIGNATURE.search("\n".join(captured_logs)), "a URL signature reached the logs"


# ------------------------------------------------------------------ hostile input


def _altered(cleaned: str, name: str) -> str:
    """The stem a key or name that had to be altered gets: cleaned text, ``~``, a hash of it."""
    return f"{cleaned}~{hashlib.sha256(name.encode()).hexdigest()[:12]}"


# Hostile media keys, each with the file stem it must get (None: refused on that item alone).
HOSTILE_KEYS: dict[str, str | None] = {
    "../../../../etc/passwd": _altered("_.._.._.._etc_passwd", "../../../../etc/passwd"),
    "/etc/passwd": _altered("_etc_passwd", "/etc/passwd"),
    "a/b/c": _altered("a_b_c", "a/b/c"),
    "..": None,  # nothing usable is left
    "nul\x00byte": _altered("nulbyte", "nul\x00byte"),
    "x" * 1000: _altered("x" * 107, "x" * 1000),  # cut to the field's 120 characters
    "ünïcødé-鍵-🔑": "ünïcødé-鍵-🔑",  # nothing to alter
    "   \t\n  ": None,
    "CON": _altered("_CON", "CON"),  # a reserved device name on Windows
    "trailing. ": _altered("trailing", "trailing. "),
}


@pytest.mark.parametrize("key", HOSTILE_KEYS, ids=[repr(k)[:20] for k in HOSTILE_KEYS])
def test_hostile_media_keys_stay_inside_the_root(key: str, tmp_path: Path) -> None:
    with FlowEmulator(items=3, videos=0) as flow:
        store = ImageStore(tmp_path / "c.db")
        client = FlowClient(
            flow.credentials, labs_url=flow.labs_url, api_url=flow.api_url, retry=FAST
        )
        service = ImageService(
            client, store, storage_root=tmp_path / "media", workers=1, slots_per_worker=2
        )
        service.sync_metadata("p")
        item = flow.items[0]
        store.db.execute(
            "UPDATE veo3_image_generations SET media_key = ? WHERE name = ?", [key, item.name]
        )
        report = service.download_images("p")
        row = store.get("p", item.name)
        store.close()
        expected = HOSTILE_KEYS[key]
        if expected is None:  # refused, clearly, on that item alone
            [failure] = report.failures
            assert failure.name == item.name and failure.kind == "UnsafePathError"
            assert report.downloaded == 2 and row.local_path is None
        else:  # sanitised into a safe name inside the root
            assert report.ok and report.downloaded == 3
            day = item.create_time.strftime("%Y-%m-%d")
            assert row.local_path == f"{day}/{expected}.{item.extension}"
            path = (tmp_path / "media" / row.local_path).resolve()
            assert path.is_relative_to((tmp_path / "media").resolve())
            assert path.read_bytes() == flow.content(item.name)
        invariants.check(tmp_path / "c.db", tmp_path / "media")
        assert not (tmp_path / "etc").exists() and not list(tmp_path.parent.glob("passwd"))


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "ftp://storage.googleapis.com/x",
        "https://evil.example.com/x",
        "http://storage.googleapis.com/x",
        "gopher://x",
    ],
)
def test_hostile_signed_urls_are_refused(url: str, tmp_path: Path) -> None:
    with FlowEmulator(items=3, videos=0) as flow:
        target = flow.items[1].name
        flow.inject(Fault.status(503), endpoint="media", name=target, times=None)
        store = ImageStore(tmp_path / "c.db")
        client = FlowClient(
            flow.credentials, labs_url=flow.labs_url, api_url=flow.api_url, retry=FAST
        )
        service = ImageService(
            client, store, storage_root=tmp_path / "media", workers=1, slots_per_worker=2
        )
        service.sync_metadata("p")
        store.db.execute(
            "UPDATE veo3_image_generations SET fife_url = ? WHERE name = ?", [url, target]
        )
        report = service.download_images("p")
        store.close()
        [failure] = report.failures
        assert failure.name == target and "refusing" in failure.message
        invariants.check(tmp_path / "c.db", tmp_path / "media")


# Hostile names straight from the listing, each with the folder it must land in.
HOSTILE_NAMES = {
    "../../escape": _altered("_.._escape", "../../escape"),  # separators replaced
    "/abs/olute": _altered("_abs_olute", "/abs/olute"),
    "a\x00b": _altered("ab", "a\x00b"),  # control characters dropped
    "x" * 1000: _altered("x" * 107, "x" * 1000),  # cut to the field's 120 characters
}


def test_hostile_names_from_the_listing_never_escape(tmp_path: Path) -> None:
    with FlowEmulator(items=4, videos=0) as flow:
        store = ImageStore(tmp_path / "c.db")
        client = FlowClient(
            flow.credentials, labs_url=flow.labs_url, api_url=flow.api_url, retry=FAST
        )
        service = ImageService(
            client,
            store,
            storage_root=tmp_path / "media",
            workers=1,
            slots_per_worker=2,
            path_template="{name}/{date}.{ext}",
        )
        service.sync_metadata("p")
        source = flow.items[0]
        for name in HOSTILE_NAMES:
            store.db.execute(
                "INSERT INTO veo3_image_generations (id, profile_id, name, media_key, created_at, fife_url, remote_state) "
                "VALUES (?, 'p', ?, 'k', '2025-10-29T10:00:00Z', ?, 'present')",
                [name[:8], name, flow.fife_url(source.name)],
            )
        report = service.download_images("p")
        rows = {row.name: row for row in store.items("p")}
        store.close()
        # Every hostile item succeeds, through its signed URL (the API knows no such name),
        # into its own sanitised folder inside the root; the ordinary items are untouched.
        assert report.failures == () and report.downloaded == 4 + len(HOSTILE_NAMES)
        assert report.from_fallback == len(HOSTILE_NAMES)
        media = (tmp_path / "media").resolve()
        for name, folder in HOSTILE_NAMES.items():
            row = rows[name]
            assert row.local_path == f"{folder}/2025-10-29.{source.extension}", (name, row)
            assert row.last_error is None
            path = (media / row.local_path).resolve()
            assert path.is_relative_to(media) and path.read_bytes() == flow.content(source.name)
        recorded = invariants.check(tmp_path / "c.db", tmp_path / "media")
        assert set(recorded) == set(rows)
        for path in (tmp_path / "media").rglob("*"):
            assert path.resolve().is_relative_to(media)
        assert not (tmp_path / "escape").exists() and not (tmp_path.parent / "escape").exists()


def test_malformed_listing_json_fails_the_sync_cleanly(tmp_path: Path) -> None:
    with FlowEmulator(items=30) as flow:
        store = ImageStore(tmp_path / "c.db")
        client = FlowClient(
            flow.credentials, labs_url=flow.labs_url, api_url=flow.api_url, retry=FAST
        )
        service = ImageService(client, store)
        flow.inject(Fault.html(), endpoint="listing", times=None)
        with pytest.raises(ProtocolError, match="listing"):
            service.sync_metadata("p")
        assert store.items("p") == []
        store.close()


def test_no_secret_in_any_repr_error_or_result(tmp_path: Path, captured_logs: list[str]) -> None:
    from veo3dl import DownloadJob, DownloadResult, FlowAccess, LoginRequired, TokenExpired
    from veo3dl._coordination import Coordinator

    with FlowEmulator(items=3, videos=1) as flow:
        secrets = flow.credentials.secrets()
        client = FlowClient(
            flow.credentials, labs_url=flow.labs_url, api_url=flow.api_url, retry=FAST
        )
        store = ImageStore(tmp_path / "c.db")
        service = ImageService(client, store, storage_root=tmp_path / "media")
        service.sync_metadata("p")
        rows = store.items("p")
        access = FlowAccess.of(client)
        with Coordinator(client.token_source) as coordinator:
            coordinated = FlowAccess.of(client, coordinator.address)
        job = DownloadJob(
            name=rows[0].name,
            destination="d/x",
            storage_root=str(tmp_path),
            fife_url=rows[0].fife_url,
            access=coordinated,
        )
        fetched = client.fetch_media(rows[0].name)
        texts = [
            repr(flow.credentials), str(flow.credentials), repr(client), repr(access), repr(coordinated),
            repr(job), str(job), repr(rows), repr(list(client.iter_items())), repr(fetched), repr(fetched.info),
            repr(service), repr(store), repr(DownloadResult(name="x", ok=True)),
        ]  # fmt: skip
        flow.expire_tokens()
        flow.stale_cookie = True
        for failing in (
            lambda: client.fetch_media(rows[1].name),
            lambda: list(client.iter_items()),
        ):
            with pytest.raises((LoginRequired, TokenExpired)) as info:
                failing()
            texts += [str(info.value), repr(info.value), repr(info.value.__dict__)]
        store.close()
        client.close()
    everything = "\n".join([*texts, *captured_logs])
    assert "Signature=" not in everything or not SIGNATURE.search(everything)
    assert_no_secret(everything, secrets)
