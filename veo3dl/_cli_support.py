"""Plumbing for the ``veo3dl`` command: options, errors as exit codes, tables."""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import attrs
import click

from veo3dl._client import FlowClient
from veo3dl._credentials import Credentials
from veo3dl._store import ImageStore
from veo3dl._urls import DEFAULT_API_URL, DEFAULT_LABS_URL
from veo3dl.exceptions import AuthError, ConfigError, StorageError, Veo3dlError

__all__ = [
    "AUTH_KINDS",
    "CLICK_CONTEXT",
    "LOGIN_HINT",
    "EXIT_AUTH",
    "EXIT_FAILED",
    "EXIT_USAGE",
    "ClientOptions",
    "cli_errors",
    "client_options",
    "default_dest",
    "open_store",
    "print_table",
]

EXIT_FAILED, EXIT_USAGE, EXIT_AUTH = 1, 2, 3
AUTH_KINDS = frozenset({"LoginRequired", "TokenExpired", "AuthError"})
LOGIN_HINT = (
    "log in again at https://labs.google/fx/tools/flow and copy a fresh cookie into VEO3DL_COOKIE"
)
CLICK_CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
F = TypeVar("F", bound=Callable[..., Any])


@attrs.frozen
class ClientOptions:
    """Credentials and hosts from options or the environment."""

    credentials: Credentials
    labs_url: str
    api_url: str

    def client(self) -> FlowClient:
        """A FlowClient for these options (a ConfigError if they are unusable)."""
        return FlowClient(self.credentials, labs_url=self.labs_url, api_url=self.api_url)


def client_options(command: F) -> F:
    """Add the credential and host options; the command receives ``options``."""

    @click.option(
        "--cookie", envvar="VEO3DL_COOKIE", show_envvar=True, help="The labs.google session cookie."
    )
    @click.option(
        "--bearer-token",
        envvar="VEO3DL_BEARER_TOKEN",
        show_envvar=True,
        help="An access token (optional).",
    )
    @click.option(
        "--api-key",
        envvar="VEO3DL_API_KEY",
        show_envvar=True,
        help="The API key the web app sends.",
    )
    @click.option(
        "--labs-url",
        envvar="VEO3DL_LABS_URL",
        show_envvar=True,
        default=DEFAULT_LABS_URL,
        show_default=True,
    )
    @click.option(
        "--api-url",
        envvar="VEO3DL_API_URL",
        show_envvar=True,
        default=DEFAULT_API_URL,
        show_default=True,
    )
    @functools.wraps(command)
    def wrapper(
        *args: Any,
        cookie: str | None,
        bearer_token: str | None,
        api_key: str | None,
        labs_url: str,
        api_url: str,
        **kwargs: Any,
    ) -> Any:
        with cli_errors():  # a credential that cannot travel in a header is a usage error
            credentials = Credentials(cookie, bearer_token, api_key)
        options = ClientOptions(credentials, labs_url, api_url)
        return command(*args, options=options, **kwargs)

    return wrapper  # type: ignore[return-value]


def default_dest(db: Path) -> Path:
    """The storage root when --dest is not given: ``media`` beside the catalogue."""
    return db.parent / "media"


@contextlib.contextmanager
def open_store(db: Path, *, must_exist: bool = False) -> Iterator[ImageStore]:
    """Open the catalogue; with *must_exist*, a missing file is a usage error."""
    if must_exist and not db.exists():
        raise ConfigError(f"no catalogue at {db}", hint="run `veo3dl sync` first, or check --db")
    store = ImageStore(db)
    try:
        yield store
    finally:
        store.close()


def _fail(code: int, message: str) -> None:
    click.echo(f"veo3dl: {message}", err=True)
    sys.exit(code)


@contextlib.contextmanager
def cli_errors() -> Iterator[None]:
    """Turn veo3dl's errors into one line on stderr and an exit code; never a traceback."""
    try:
        yield
    except AuthError as error:
        _fail(EXIT_AUTH, str(error))
    except (ConfigError, StorageError) as error:
        _fail(EXIT_USAGE, str(error))
    except Veo3dlError as error:
        _fail(EXIT_FAILED, f"{type(error).__name__}: {error}")
    except KeyboardInterrupt:
        _fail(130, "interrupted")
    except BrokenPipeError:
        # The reader went away (`veo3dl status | head`): nothing left to say to it.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(0)
    except OSError as error:
        _fail(EXIT_USAGE, f"{error.strerror or error}: {error.filename or ''}".rstrip(": "))


def print_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """A plain-text table: text columns left-aligned, numbers right-aligned."""
    cells = [[str(value) for value in row] for row in rows]
    widths = [
        max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)
    ]
    numeric = [all(isinstance(row[i], (int, float)) for row in rows) for i in range(len(headers))]

    def line(values: Sequence[str]) -> str:
        parts = [
            v.rjust(w) if n else v.ljust(w) for v, w, n in zip(values, widths, numeric, strict=True)
        ]
        return "  ".join(parts).rstrip()

    click.echo(line(headers))
    click.echo("  ".join("-" * w for w in widths))
    for row in cells:
        click.echo(line(row))
