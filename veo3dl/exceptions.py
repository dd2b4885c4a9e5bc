"""Every error veo3dl raises, in one tree.

Catch :class:`Veo3dlError` for all of them, a middle class for a family, a
leaf for one case.  Each carries the context a caller needs to act (the item's
name, the HTTP status, how long to wait) as attributes, and a message that
says what happened and what to do.  Messages never hold a secret: URLs are
shown without their ``key=`` and ``Signature=`` values.

Errors cross process boundaries (a worker's failure comes back to the parent
through a pipe), so every class pickles and unpickles to an error of the same class with the
same message and context attributes.

The tree::

    Veo3dlError
    ├── ConfigError ................. a bad argument, setting or environment value (a ValueError too)
    ├── AuthError ................... the service refused our credentials
    │   ├── TokenExpired ............ the bearer token expired and could not be renewed
    │   └── LoginRequired ........... the browser cookie is stale: log in again
    ├── ApiError .................... the service answered with an error status
    │   ├── RateLimited ............. 429, with ``retry_after`` seconds
    │   └── NotFoundError ........... 404: the item is gone
    ├── TransportError .............. no usable answer: connection refused, reset, timed out
    ├── ProtocolError ............... an answer of an unexpected shape, naming where
    │   └── PaginationError ......... the listing could not be followed to its end
    ├── DownloadError ............... one item could not be saved
    │   ├── IntegrityError .......... the bytes are not the media file (HTML, truncated, ...)
    │   ├── UrlExpired .............. a signed file URL is past its ``Expires``
    │   └── UnsafePathError ......... the item's path would leave the storage root
    ├── StorageError ................ the catalogue database or the disk failed
    └── PoolError ................... the worker pool could not run a job
        ├── WorkerCrashed ........... the worker died running it, ``max_attempts`` times
        ├── JobTimeout .............. the job ran past ``job_timeout``
        ├── HandlerError ............ the handler raised something that could not cross back
        ├── PoolBroken .............. workers die before taking any job (crash loop)
        └── PoolClosed .............. the pool was shut down
"""

from __future__ import annotations

from typing import Any

__all__ = [
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
    "Veo3dlError",
    "WorkerCrashed",
]


def _restore(cls: type[Veo3dlError], message: str, state: dict[str, Any]) -> Veo3dlError:
    """Rebuild an error from its message and attributes (the target of ``__reduce__``)."""
    error = cls.__new__(cls)
    Exception.__init__(error, message)
    error.__dict__.update(state)
    return error


class Veo3dlError(Exception):
    """Base class of every error raised by veo3dl.

    ``item`` names the media item concerned, when there is one; ``hint`` says
    what the caller can do about it.  Both are already part of ``str(error)``.
    """

    item: str | None
    hint: str | None

    def __init__(self, message: str, *, item: str | None = None, hint: str | None = None) -> None:
        self.item = item
        self.hint = hint
        text = f"{item}: {message}" if item else message
        if hint:
            text = f"{text} ({hint})"
        super().__init__(text)

    @property
    def message(self) -> str:
        """The full message, as ``str(error)`` shows it."""
        return str(self.args[0]) if self.args else ""

    def __reduce__(self) -> tuple[Any, ...]:
        # Subclasses take keyword-only context, so the default reduce
        # (``cls(*args)``) cannot rebuild them; restore the attributes directly.
        return (_restore, (type(self), self.message, dict(self.__dict__)))


class ConfigError(Veo3dlError, ValueError):
    """A bad argument, setting or environment value; nothing was attempted.

    Also a :class:`ValueError`, as Python code expects of a bad argument.
    """


class AuthError(Veo3dlError):
    """The service refused our credentials.  ``status`` is the HTTP status, if any."""

    status: int | None

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        item: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.status = status
        super().__init__(message, item=item, hint=hint)


class TokenExpired(AuthError):
    """The bearer token was refused and no cookie was available to mint a new one."""


class LoginRequired(AuthError):
    """The browser session cookie is stale: only a new login in the browser helps."""

    def __init__(
        self,
        message: str = "the Flow session cookie is stale (ACCESS_TOKEN_REFRESH_NEEDED)",
        *,
        status: int | None = None,
        item: str | None = None,
        hint: str | None = (
            "log in again at https://labs.google/fx/tools/flow and copy a fresh cookie "
            "into VEO3DL_COOKIE"
        ),
    ) -> None:
        super().__init__(message, status=status, item=item, hint=hint)


class ApiError(Veo3dlError):
    """The service answered with an error.

    ``status`` is the HTTP status; ``google_status`` and ``reason`` come from
    Google's error body (``RESOURCE_EXHAUSTED``, ``PUBLIC_ERROR_...``) when it
    had one; ``url`` is the request URL with its secrets removed.
    """

    status: int
    google_status: str | None
    reason: str | None
    url: str | None

    def __init__(
        self,
        message: str,
        *,
        status: int,
        google_status: str | None = None,
        reason: str | None = None,
        url: str | None = None,
        item: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.status = status
        self.google_status = google_status
        self.reason = reason
        self.url = url
        super().__init__(message, item=item, hint=hint)


class RateLimited(ApiError):
    """HTTP 429.  ``retry_after`` is the wait the service asked for, in seconds, if any."""

    retry_after: float | None

    def __init__(
        self,
        message: str,
        *,
        status: int = 429,
        retry_after: float | None = None,
        google_status: str | None = None,
        reason: str | None = None,
        url: str | None = None,
        item: str | None = None,
        hint: str | None = "wait and run again; lower --workers if it keeps happening",
    ) -> None:
        self.retry_after = retry_after
        super().__init__(
            message,
            status=status,
            google_status=google_status,
            reason=reason,
            url=url,
            item=item,
            hint=hint,
        )


class NotFoundError(ApiError):
    """HTTP 404: the item does not exist (any more) on the service."""


class TransportError(Veo3dlError):
    """No usable answer arrived: the connection was refused, reset or timed out."""

    url: str | None

    def __init__(
        self,
        message: str,
        *,
        url: str | None = None,
        item: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.url = url
        super().__init__(message, item=item, hint=hint)


class ProtocolError(Veo3dlError):
    """An answer did not have the expected shape.  ``where`` names the place."""

    where: str

    def __init__(
        self,
        message: str,
        *,
        where: str,
        item: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.where = where
        super().__init__(f"{message} (at {where})", item=item, hint=hint)


class PaginationError(ProtocolError):
    """The listing could not be followed past ``page``."""

    page: int

    def __init__(
        self,
        message: str,
        *,
        page: int,
        where: str = "listing",
        hint: str | None = "run the sync again; it resumes safely",
    ) -> None:
        self.page = page
        super().__init__(message, where=f"{where}, page {page}", hint=hint)


class DownloadError(Veo3dlError):
    """One item could not be saved; the rest of the batch is unaffected."""


class IntegrityError(DownloadError):
    """The bytes that arrived are not the media file: nothing was kept."""


class UrlExpired(DownloadError):
    """A signed file URL is past its ``Expires`` time (``expired_at``, unix seconds)."""

    expired_at: float | None

    def __init__(
        self,
        message: str = "the signed file URL has expired",
        *,
        expired_at: float | None = None,
        item: str | None = None,
        hint: str | None = "run a sync to get fresh URLs",
    ) -> None:
        self.expired_at = expired_at
        super().__init__(message, item=item, hint=hint)


class UnsafePathError(DownloadError):
    """The item's destination would resolve outside the storage root."""


class StorageError(Veo3dlError):
    """The catalogue database or the storage directory failed.  ``path`` names it."""

    path: str | None

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        item: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.path = path
        super().__init__(message, item=item, hint=hint)


class PoolError(Veo3dlError):
    """The worker pool could not run a job."""


class WorkerCrashed(PoolError):
    """The worker running the job died every time it was tried.

    ``exitcode`` is the last worker's exit code (negative for a signal),
    ``signal_name`` the signal's name when it was one, ``attempts`` how many
    times the job was started.
    """

    exitcode: int | None
    signal_name: str | None
    attempts: int

    def __init__(
        self,
        message: str,
        *,
        exitcode: int | None,
        signal_name: str | None = None,
        attempts: int,
        item: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.exitcode = exitcode
        self.signal_name = signal_name
        self.attempts = attempts
        super().__init__(message, item=item, hint=hint)


class JobTimeout(PoolError):
    """The job ran longer than ``timeout`` seconds; its worker was killed and replaced."""

    timeout: float

    def __init__(
        self,
        message: str,
        *,
        timeout: float,
        item: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.timeout = timeout
        super().__init__(message, item=item, hint=hint)


class HandlerError(PoolError):
    """The handler raised an exception that could not be sent back as itself.

    ``exc_type`` is the original class's qualified name and ``remote_traceback``
    the traceback text from the worker.
    """

    exc_type: str
    remote_traceback: str

    def __init__(
        self,
        message: str,
        *,
        exc_type: str,
        remote_traceback: str = "",
        item: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.exc_type = exc_type
        self.remote_traceback = remote_traceback
        super().__init__(message, item=item, hint=hint)


class PoolBroken(PoolError):
    """Workers keep dying before taking any job (a crash loop); the pool gave up."""


class PoolClosed(PoolError):
    """The pool was shut down; it takes no more jobs."""
