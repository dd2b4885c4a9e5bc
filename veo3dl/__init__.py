"""veo3dl: mirror a Google Flow (Imagen / Veo 3) media library to disk.

The public face of the package is what ``__all__`` lists; every module whose
name starts with an underscore is private.
"""

from veo3dl import exceptions
from veo3dl._access import FlowAccess
from veo3dl._client import FetchedMedia, FlowClient, MediaInfo
from veo3dl._credentials import Credentials
from veo3dl._download_run import DownloadFailure, DownloadProgress, DownloadReport
from veo3dl._http import RetryPolicy
from veo3dl._jobs import DownloadJob, DownloadResult
from veo3dl._listing import Listing
from veo3dl._logging import LogConfig
from veo3dl._models import ListingPage, ListingStop, MediaItem, MediaType
from veo3dl._pool import DownloadPool, JobOutcome, PoolStatus
from veo3dl._records import DateCounts, StoreCounts, StoredItem
from veo3dl._schema import MigrationReport
from veo3dl._service import ImageService
from veo3dl._store import ImageStore
from veo3dl._sync import SyncProgress, SyncReport
from veo3dl._version import __version__
from veo3dl.exceptions import (
    ApiError,
    AuthError,
    ConfigError,
    DownloadError,
    HandlerError,
    IntegrityError,
    JobTimeout,
    LoginRequired,
    NotFoundError,
    PaginationError,
    PoolBroken,
    PoolClosed,
    PoolError,
    ProtocolError,
    RateLimited,
    StorageError,
    TokenExpired,
    TransportError,
    UnsafePathError,
    UrlExpired,
    Veo3dlError,
    WorkerCrashed,
)

__all__ = [
    "ApiError",
    "AuthError",
    "ConfigError",
    "Credentials",
    "DateCounts",
    "DownloadError",
    "DownloadFailure",
    "DownloadJob",
    "DownloadPool",
    "DownloadProgress",
    "DownloadReport",
    "DownloadResult",
    "exceptions",
    "FetchedMedia",
    "FlowAccess",
    "FlowClient",
    "HandlerError",
    "ImageService",
    "ImageStore",
    "IntegrityError",
    "JobOutcome",
    "JobTimeout",
    "Listing",
    "ListingPage",
    "ListingStop",
    "LogConfig",
    "LoginRequired",
    "MediaInfo",
    "MediaItem",
    "MediaType",
    "MigrationReport",
    "NotFoundError",
    "PaginationError",
    "PoolBroken",
    "PoolClosed",
    "PoolError",
    "PoolStatus",
    "ProtocolError",
    "RateLimited",
    "RetryPolicy",
    "StorageError",
    "StoreCounts",
    "StoredItem",
    "SyncProgress",
    "SyncReport",
    "TokenExpired",
    "TransportError",
    "UnsafePathError",
    "UrlExpired",
    "Veo3dlError",
    "WorkerCrashed",
    "__version__",
]
