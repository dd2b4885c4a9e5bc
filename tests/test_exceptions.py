"""The exception tree: shape, messages, and pickle round trips."""

from __future__ import annotations

import inspect
import pickle

import pytest

import veo3dl
from veo3dl import exceptions as exc

INSTANCES = [
    exc.Veo3dlError("plain", item="CAMa1", hint="do this"),
    exc.ConfigError("bad option"),
    exc.AuthError("refused", status=401, item="CAMa1"),
    exc.TokenExpired("expired", status=401),
    exc.LoginRequired(),
    exc.ApiError(
        "boom", status=500, google_status="INTERNAL", reason="R", url="https://h/p", item="x"
    ),
    exc.RateLimited("slow down", retry_after=2.5, reason="PUBLIC_ERROR_USER_REQUESTS_THROTTLED"),
    exc.NotFoundError("gone", status=404, google_status="NOT_FOUND"),
    exc.TransportError("reset", url="https://h/p", item="x"),
    exc.ProtocolError("missing x", where="listing item"),
    exc.PaginationError("refused token", page=3),
    exc.DownloadError("failed", item="x"),
    exc.IntegrityError("html page", item="x"),
    exc.UrlExpired(expired_at=12.0, item="x"),
    exc.UnsafePathError("escapes root", item="x"),
    exc.StorageError("disk full", path="/tmp/x", item="x"),
    exc.WorkerCrashed("died", exitcode=-9, signal_name="SIGKILL", attempts=3, item="x"),
    exc.JobTimeout("too slow", timeout=1.5, item="x"),
    exc.HandlerError("ValueError: no", exc_type="ValueError", remote_traceback="Traceback ..."),
    exc.PoolError("generic"),
    exc.PoolBroken("crash loop"),
    exc.PoolClosed("closed"),
]


def test_every_public_exception_is_covered() -> None:
    classes = {
        obj
        for _, obj in inspect.getmembers(exc, inspect.isclass)
        if issubclass(obj, exc.Veo3dlError)
    }
    assert classes == {type(e) for e in INSTANCES}
    assert set(exc.__all__) == {c.__name__ for c in classes}


@pytest.mark.parametrize("error", INSTANCES, ids=lambda e: type(e).__name__)
def test_pickle_round_trip(error: exc.Veo3dlError) -> None:
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error)
    assert str(copy) == str(error)
    assert copy.__dict__ == error.__dict__
    assert isinstance(copy, exc.Veo3dlError)


@pytest.mark.parametrize("error", INSTANCES, ids=lambda e: type(e).__name__)
def test_reexported_at_top_level(error: exc.Veo3dlError) -> None:
    assert getattr(veo3dl, type(error).__name__) is type(error)


def test_message_names_item_and_hint() -> None:
    error = exc.DownloadError("could not save", item="CAMa$1", hint="run again")
    assert str(error) == "CAMa$1: could not save (run again)"
    assert error.item == "CAMa$1" and error.hint == "run again"


def test_login_required_tells_how_to_log_in() -> None:
    assert "log in again" in str(exc.LoginRequired())
    assert isinstance(exc.LoginRequired(), exc.AuthError)


def test_hierarchy() -> None:
    assert issubclass(exc.RateLimited, exc.ApiError)
    assert issubclass(exc.NotFoundError, exc.ApiError)
    assert issubclass(exc.PaginationError, exc.ProtocolError)
    assert issubclass(exc.IntegrityError, exc.DownloadError)
    for leaf in (
        exc.WorkerCrashed,
        exc.JobTimeout,
        exc.PoolClosed,
        exc.PoolBroken,
        exc.HandlerError,
    ):
        assert issubclass(leaf, exc.PoolError)


def test_docstring_draws_every_class() -> None:
    for name in exc.__all__:
        assert name in (exc.__doc__ or ""), name
