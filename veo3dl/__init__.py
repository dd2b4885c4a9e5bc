"""veo3dl: mirror a Google Flow (Imagen / Veo 3) media library to disk.

The public face of the package is what ``__all__`` lists; every module whose
name starts with an underscore is private.
"""

from veo3dl import exceptions
from veo3dl._client import FetchedMedia, FlowClient, MediaInfo
from veo3dl._credentials import Credentials
from veo3dl._http import RetryPolicy
from veo3dl._listing import Listing
from veo3dl._models import ListingPage, ListingStop, MediaItem, MediaType
from veo3dl._pool import DownloadPool, JobOutcome, PoolStatus
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
    "DownloadError",
    "DownloadPool",
    "FetchedMedia",
    "FlowClient",
    "HandlerError",
    "IntegrityError",
    "JobOutcome",
    "JobTimeout",
    "Listing",
    "ListingPage",
    "ListingStop",
    "LoginRequired",
    "MediaInfo",
    "MediaItem",
    "MediaType",
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
    "TokenExpired",
    "TransportError",
    "UnsafePathError",
    "UrlExpired",
    "Veo3dlError",
    "WorkerCrashed",
    "__version__",
    "exceptions",
]
