"""Shared fixtures: start methods, the long runs, and processes that are never left behind.

``pytest --long`` runs the chaos suite harder: the tests marked ``slow`` run,
the ``chaos_scale`` fixture is 10 instead of 1, tests asking for
``chaos_seed`` run over 10 seeds instead of one, and every Hypothesis test
tries 10 times as many examples.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, MutableMapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import hypothesis
import invariants
import psutil
import pytest
import structlog

START_METHODS = [
    m for m in ("spawn", "forkserver", "fork") if m in multiprocessing.get_all_start_methods()
]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--long", action="store_true", help="run the long chaos runs (tests marked slow)"
    )


LONG_SCALE = 10
# What signalling or waiting for a process that is already gone raises.
_GONE = (ProcessLookupError, PermissionError, psutil.Error, subprocess.TimeoutExpired)


def _scale(config: pytest.Config) -> int:
    return LONG_SCALE if config.getoption("--long") else 1


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "chaos_seed" in metafunc.fixturenames:
        seeds = range(_scale(metafunc.config))
        metafunc.parametrize("chaos_seed", seeds, ids=[f"seed{seed}" for seed in seeds])


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--long"):
        _scale_hypothesis(items)
        return
    skip = pytest.mark.skip(reason="long run: pass --long")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def _scale_hypothesis(items: list[pytest.Item]) -> None:
    """Multiply ``max_examples`` of every Hypothesis test, explicit ``@settings`` included.

    (A settings profile would not do: an explicit ``@settings(max_examples=...)``
    overrides the profile.  Hypothesis reads the test's settings when it runs.)
    """
    done: set[int] = set()
    for item in items:
        test = getattr(item, "obj", None)
        current = getattr(test, "_hypothesis_internal_use_settings", None)
        if current is None or id(test) in done:
            continue
        done.add(id(test))
        scaled = hypothesis.settings(current, max_examples=current.max_examples * LONG_SCALE)
        test._hypothesis_internal_use_settings = scaled  # type: ignore[union-attr]


def _infrastructure(process: psutil.Process) -> bool:
    """multiprocessing's own helpers live as long as the test session."""
    try:
        cmdline = " ".join(process.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False
    return "multiprocessing.forkserver" in cmdline or "multiprocessing.resource_tracker" in cmdline


def live_children() -> list[psutil.Process]:
    """Descendants of this process that are not multiprocessing's helpers."""
    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            if not _infrastructure(child):
                found.append(child)
        except psutil.NoSuchProcess:
            continue
    return found


def wait_until_gone(pids: set[int] | list[int], timeout: float = 15.0) -> list[int]:
    """Poll until none of *pids* exists (zombies count as existing); return survivors."""
    deadline = time.monotonic() + timeout
    while True:
        alive = [pid for pid in pids if psutil.pid_exists(pid) and _running(pid)]
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.02)


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE or _is_our_child(pid)
    except psutil.NoSuchProcess:
        return False


def _is_our_child(pid: int) -> bool:
    return any(child.pid == pid for child in psutil.Process().children(recursive=True))


def poll(condition: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    """Wait for *condition()* to be truthy, with a deadline; return its value."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


def started(folder: Path, key: str) -> list[Path]:
    """The marker files a blocking job (``pooljobs.Block``) leaves when it starts."""
    return sorted(folder.glob(f"started-{key}-*"))


def started_pid(path: Path) -> int:
    """The worker pid recorded in a start marker's name."""
    return int(path.name.split("-")[2])


def release(folder: Path, key: str) -> None:
    """Let the blocking jobs of *key* finish."""
    (folder / f"release-{key}").touch()


@pytest.fixture
def no_leftover_processes() -> Iterator[None]:
    """Fail the test if it leaves any process of its own behind (after a grace period)."""
    before = {p.pid for p in live_children()}
    yield
    new = {p.pid for p in live_children()} - before
    survivors = wait_until_gone(new)
    assert not survivors, f"processes left behind: {survivors}"


@pytest.fixture
def chaos_scale(request: pytest.FixtureRequest) -> int:
    """How hard the chaos tests push: 1 in CI, 10 with ``--long``."""
    return _scale(request.config)


@pytest.fixture
def captured_logs() -> Iterator[list[str]]:
    """Every log line at debug level, structlog and stdlib alike, as text."""
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    def collect_structlog(_logger: object, _method: str, event: MutableMapping[str, Any]) -> str:
        lines.append(repr(event))
        raise structlog.DropEvent

    root = logging.getLogger()
    handler, level = Collect(logging.DEBUG), root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    structlog.configure(processors=[collect_structlog])
    try:
        yield lines
    finally:
        structlog.reset_defaults()
        root.removeHandler(handler)
        root.setLevel(level)


@pytest.fixture(params=START_METHODS)
def start_method(request: pytest.FixtureRequest) -> str:
    """Each pool test runs once per start method."""
    return str(request.param)


class Child:
    """A subprocess of a test: output to files, tagged, and never left behind.

    Its stdout and stderr go to files in *folder* (no pipe can fill up and
    block it); its environment (*env*, or this process's) carries a fresh
    :data:`invariants.TAG`, inherited by everything it starts.  Leaving the
    ``with`` block — normally, on a failure or on a timeout of :meth:`wait`
    — SIGKILLs the process, its descendants and every tagged process, and
    reaps it.
    """

    def __init__(
        self,
        args: Sequence[str],
        folder: Path,
        *,
        env: Mapping[str, str] | None = None,
        name: str = "child",
    ) -> None:
        self.args = list(args)
        self.tag = f"{name}-{uuid.uuid4().hex}"
        environment = dict(os.environ if env is None else env)
        environment[invariants.TAG] = self.tag
        folder.mkdir(parents=True, exist_ok=True)
        self.out_path = folder / f"{self.tag}.out"
        self.err_path = folder / f"{self.tag}.err"
        with self.out_path.open("wb") as out, self.err_path.open("wb") as err:
            self.proc = subprocess.Popen(
                self.args, stdout=out, stderr=err, env=environment, start_new_session=True
            )

    def __repr__(self) -> str:
        return f"Child(pid={self.pid}, tag={self.tag!r})"

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def stdout(self) -> str:
        return self.out_path.read_text(errors="replace")

    @property
    def stderr(self) -> str:
        return self.err_path.read_text(errors="replace")

    def descendants(self) -> list[psutil.Process]:
        """Its live descendants (none once it has exited and was reaped: its pid may be reused)."""
        if self.proc.poll() is not None:
            return []
        try:
            return list(psutil.Process(self.pid).children(recursive=True))
        except psutil.Error:
            return []

    def wait(self, timeout: float) -> int:
        """Its exit code; after *timeout* seconds it is killed (with its tree) and the test fails."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill_all()
            raise AssertionError(
                f"{self!r} still running after {timeout} s, killed; stderr: {self.stderr[-2000:]}"
            ) from None

    def kill_all(self, timeout: float = 15.0) -> None:
        """SIGKILL it, its descendants and every process with its tag, until none is left."""
        deadline = time.monotonic() + timeout
        while True:
            victims = [*self.descendants(), *invariants.tagged(self.tag)]
            if self.proc.poll() is None:
                self.proc.kill()
                with contextlib.suppress(*_GONE):
                    os.killpg(self.pid, signal.SIGKILL)
            for victim in victims:
                with contextlib.suppress(*_GONE):
                    victim.kill()
            if self.proc.poll() is None:
                with contextlib.suppress(*_GONE):
                    self.proc.wait(max(0.1, deadline - time.monotonic()))
            if not victims or time.monotonic() > deadline:
                return

    def __enter__(self) -> Child:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.kill_all()
