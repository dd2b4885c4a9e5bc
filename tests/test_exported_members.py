"""The public face is exactly what ``__all__`` says, and nothing leaks in."""

from __future__ import annotations

import veo3dl
import veo3dl.testing

# The intended API, spelled out: adding or removing a public name is a
# decision, and this list is where it is made.
INTENDED = {
    "__version__",
    "exceptions",
    # catalogue and service
    "DateCounts",
    "ImageService",
    "ImageStore",
    "MigrationReport",
    "StoreCounts",
    "StoredItem",
    "SyncProgress",
    "SyncReport",
    "DownloadFailure",
    "DownloadProgress",
    "DownloadReport",
    # the Flow client
    "Credentials",
    "FetchedMedia",
    "FlowAccess",
    "FlowClient",
    "Listing",
    "ListingPage",
    "ListingStop",
    "MediaInfo",
    "MediaItem",
    "MediaType",
    "RetryPolicy",
    "LogConfig",
    # the pool and its jobs
    "DownloadJob",
    "DownloadPool",
    "DownloadResult",
    "JobOutcome",
    "PoolStatus",
    # errors
    "Veo3dlError",
    "ApiError",
    "AuthError",
    "ConfigError",
    "DownloadError",
    "HandlerError",
    "IntegrityError",
    "JobTimeout",
    "LoginRequired",
    "NotFoundError",
    "PaginationError",
    "PoolBroken",
    "PoolClosed",
    "PoolError",
    "ProtocolError",
    "RateLimited",
    "StorageError",
    "TokenExpired",
    "TransportError",
    "UnsafePathError",
    "UrlExpired",
    "WorkerCrashed",
}
TESTING = {
    "DEFAULT_BASE_TIME",
    "EmulatedItem",
    "Fault",
    "FaultHandle",
    "FaultKind",
    "FlowEmulator",
    "MediaBlob",
    "RequestHold",
}


def test_exports_are_exactly_the_intended_api() -> None:
    assert set(veo3dl.__all__) == INTENDED
    assert len(veo3dl.__all__) == len(INTENDED)


def test_all_public_names_are_exported() -> None:
    # ``veo3dl.testing`` is a public subpackage loaded on demand (this file
    # imports it), not a name of the top-level API.
    public = sorted(
        (
            name
            for name in vars(veo3dl)
            if (not name.startswith("_") or name == "__version__") and name != "testing"
        ),
        key=str.casefold,
    )
    assert sorted(veo3dl.__all__, key=str.casefold) == public


def test_testing_exports() -> None:
    public = sorted(name for name in vars(veo3dl.testing) if not name.startswith("_"))
    assert sorted(veo3dl.testing.__all__) == public
    assert set(veo3dl.testing.__all__) == TESTING


def test_every_export_has_a_docstring() -> None:
    for name in veo3dl.__all__:
        obj = getattr(veo3dl, name)
        if name == "__version__":
            continue
        assert (obj.__doc__ or "").strip(), f"{name} has no docstring"


def test_version() -> None:
    assert veo3dl.__version__.count(".") == 2
