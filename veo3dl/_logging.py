"""Logging that never prints on its own and never carries a secret.

veo3dl logs structured events (``log.info("page_synced", page=2, items=18)``).
Where they go is the application's choice:

* if the application configured structlog, events go through *its*
  structlog configuration (veo3dl never calls ``structlog.configure``; only
  the ``veo3dl`` command does, for itself);
* otherwise they go to stdlib :mod:`logging` under the ``veo3dl`` logger,
  which has a ``NullHandler``: silent unless the application asks for them.

Either way the event and every value are scrubbed before they leave
(:func:`scrub_event`), and :func:`protect_stdlib_loggers` scrubs urllib3's
own debug lines, which would otherwise print request URLs with ``key=...``.

Worker processes started by forkserver or spawn begin with no logging
configured.  A :class:`LogConfig` is the command's configuration as a value:
the command hands it to the pool as the workers' initializer, so their lines
reach the same stderr, rendered and scrubbed the same way.  Nothing does this
for a library user who did not ask for it.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
from collections.abc import Iterable, Mapping, MutableMapping
from typing import Any, TextIO

import attrs
import structlog

from veo3dl._redaction import redact_text
from veo3dl.exceptions import ConfigError

__all__ = [
    "LogConfig",
    "Logger",
    "SecretFilter",
    "configure_for_cli",
    "get_logger",
    "protect_stdlib_loggers",
    "scrub_event",
]

_ROOT = "veo3dl"
logging.getLogger(_ROOT).addHandler(logging.NullHandler())

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}
_URLLIB3_LOGGERS = ("urllib3.connectionpool", "urllib3.connection", "urllib3.util.retry", "urllib3")
_FORMATS = ("console", "json")
_STREAMS = ("stderr", "stdout")


def _scrub(value: Any, secrets: Iterable[str]) -> Any:
    if isinstance(value, str):
        return redact_text(value, secrets)
    if isinstance(value, (int, float, bool)) or value is None:
        return value
    if isinstance(value, Mapping):
        return {k: _scrub(v, secrets) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_scrub(v, secrets) for v in value)
    if isinstance(value, BaseException):
        return redact_text(f"{type(value).__name__}: {value}", secrets)
    return redact_text(repr(value), secrets)


def scrub_event(
    _logger: object, _method: str, event_dict: MutableMapping[str, Any], secrets: Iterable[str] = ()
) -> MutableMapping[str, Any]:
    """A structlog processor: scrub secrets out of every value of *event_dict*."""
    for key, value in list(event_dict.items()):
        event_dict[key] = _scrub(value, secrets)
    return event_dict


class Logger:
    """A small structured logger bound to a name and some context."""

    __slots__ = ("_context", "_name", "_secrets")

    def __init__(
        self, name: str, context: Mapping[str, Any] | None = None, secrets: tuple[str, ...] = ()
    ) -> None:
        self._name = name
        self._context = dict(context or {})
        self._secrets = secrets

    def bind(self, **context: Any) -> Logger:
        """A logger that adds *context* to every event."""
        return Logger(self._name, {**self._context, **context}, self._secrets)

    def with_secrets(self, secrets: Iterable[str]) -> Logger:
        """A logger that also removes these exact strings from every event."""
        return Logger(self._name, self._context, tuple(s for s in secrets if s))

    def debug(self, event: str, **values: Any) -> None:
        """Log *event* at debug level."""
        self._log("debug", event, values)

    def info(self, event: str, **values: Any) -> None:
        """Log *event* at info level."""
        self._log("info", event, values)

    def warning(self, event: str, **values: Any) -> None:
        """Log *event* at warning level."""
        self._log("warning", event, values)

    def error(self, event: str, **values: Any) -> None:
        """Log *event* at error level."""
        self._log("error", event, values)

    def _log(self, method: str, event: str, values: dict[str, Any]) -> None:
        std = logging.getLogger(self._name)
        configured = structlog.is_configured()
        if not configured and not std.isEnabledFor(_LEVELS[method]):
            return
        fields = scrub_event(None, method, {**self._context, **values}, self._secrets)
        text = redact_text(event, self._secrets)
        if configured:
            getattr(structlog.get_logger(self._name), method)(
                text, logger_name=self._name, **fields
            )
        else:
            rendered = " ".join(f"{key}={value!r}" for key, value in fields.items())
            std.log(_LEVELS[method], "%s %s", text, rendered)


def get_logger(name: str) -> Logger:
    """The logger for module *name* (``veo3dl._client`` logs as ``veo3dl.client``)."""
    return Logger(name.replace("._", "."))


class SecretFilter(logging.Filter):
    """A stdlib filter that rewrites each record's message with secrets scrubbed."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets = tuple(s for s in secrets if s)

    def filter(self, record: logging.LogRecord) -> bool:
        """Scrub the record in place; never drops it."""
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken record must not break logging
            message = str(record.msg)
        record.msg = redact_text(message, self.secrets)
        record.args = None
        return True


def protect_stdlib_loggers() -> None:
    """Scrub urllib3's own log lines (idempotent).

    urllib3 logs ``"GET /v1/media/...?key=AIza..."`` at debug level.  A
    filter on its loggers scrubs the line whatever handler the application
    attached.
    """
    for name in _URLLIB3_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, SecretFilter) for f in logger.filters):
            logger.addFilter(SecretFilter())


def _add_pid(
    _logger: object, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """A structlog processor: which process logged (tells a worker's lines apart)."""
    event_dict.setdefault("pid", os.getpid())
    return event_dict


def configure_for_cli(
    level: str, fmt: str, secrets: Iterable[str], stream: TextIO, *, tag_pid: bool = False
) -> None:
    """Route every log line of the ``veo3dl`` command to *stream*, scrubbed.

    Only the command calls this (directly or through :class:`LogConfig`): it
    configures structlog (console or JSON rendering) and the stdlib root
    logger (urllib3 and friends), both filtering at *level* and removing
    *secrets* and every secret shape.  urllib3 is held at ERROR below debug
    level.  With *tag_pid*, every line carries the process id.
    """
    secrets = tuple(s for s in secrets if s)
    number = logging.getLevelName(level.upper())
    if not isinstance(number, int):
        raise ValueError(f"unknown log level {level!r}")
    scrub = functools.partial(scrub_event, secrets=secrets)
    shared: list[Any] = [
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        *([_add_pid] if tag_pid else []),
        scrub,
    ]
    renderer: Any
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=stream.isatty())
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(number),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(stream)
    handler.addFilter(SecretFilter(secrets))
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
        )
    )
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(number)
    for name in _URLLIB3_LOGGERS:
        for old in [f for f in logging.getLogger(name).filters if isinstance(f, SecretFilter)]:
            logging.getLogger(name).removeFilter(old)
        logging.getLogger(name).addFilter(SecretFilter(secrets))
    # urllib3 warns "Retrying (Retry(...))" on every connect retry; the client's
    # own request_retry event says what matters, redacted.  Its lines are for
    # debugging; NOTSET at debug (not DEBUG) lets a second call lower it again.
    logging.getLogger("urllib3").setLevel(
        logging.NOTSET if number <= logging.DEBUG else logging.ERROR
    )


def _lower(value: str) -> str:
    return str(value).lower()


def _secret_tuple(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(str(s) for s in values if s)


def _check_level(_instance: object, _attribute: object, value: str) -> None:
    if value not in _LEVELS:
        raise ConfigError(f"unknown log level {value!r}", hint=f"one of {', '.join(_LEVELS)}")


def _check_choice(choices: tuple[str, ...]) -> Any:
    def check(_instance: object, attribute: attrs.Attribute[str], value: str) -> None:
        if value not in choices:
            raise ConfigError(
                f"{attribute.name} must be one of {', '.join(choices)}, not {value!r}"
            )

    return check


@attrs.frozen
class LogConfig:
    """How the ``veo3dl`` command logs, as a value that can cross into worker processes.

    *level* is ``"debug"``, ``"info"``, ``"warning"`` or ``"error"``; *fmt*
    ``"console"`` or ``"json"``; *secrets* the exact strings to scrub besides
    every secret shape (never shown in the repr); *stream* ``"stderr"`` or
    ``"stdout"``, looked up in the process that applies the config, so that a
    worker writes to the stream it inherited.

    :meth:`apply` configures structlog and stdlib logging of the current
    process (replacing what was there).  Calling the value does the same and
    tags each line with the process id, which makes it a
    :class:`~veo3dl.DownloadPool` *initializer*:
    ``DownloadPool(initializer=LogConfig("debug", "json"))``, or
    ``ImageService(..., worker_logging=LogConfig("debug"))``.  Workers under
    every start method then log like the parent; without it they keep
    whatever logging they have (silent, except under fork).
    """

    level: str = attrs.field(default="warning", converter=_lower, validator=_check_level)
    fmt: str = attrs.field(default="console", validator=_check_choice(_FORMATS))
    secrets: tuple[str, ...] = attrs.field(default=(), converter=_secret_tuple, repr=False)
    stream: str = attrs.field(default="stderr", validator=_check_choice(_STREAMS))

    def apply(self, *, tag_pid: bool = False) -> None:
        """Configure this process's logging (see :func:`configure_for_cli`)."""
        stream: TextIO | None = getattr(sys, self.stream)
        if stream is None:  # no stream at all (a windowless process): nowhere to log to
            return
        configure_for_cli(self.level, self.fmt, self.secrets, stream, tag_pid=tag_pid)

    def __call__(self) -> None:
        """Configure a worker process: :meth:`apply`, every line tagged with its pid."""
        self.apply(tag_pid=True)
