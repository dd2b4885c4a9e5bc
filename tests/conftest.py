"""Shared fixtures: start methods, and the check that no process is left behind."""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

START_METHODS = [
    m for m in ("spawn", "forkserver", "fork") if m in multiprocessing.get_all_start_methods()
]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--long", action="store_true", help="run the long chaos runs (tests marked slow)"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--long"):
        return
    skip = pytest.mark.skip(reason="long run: pass --long")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


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
    return 10 if request.config.getoption("--long") else 1


@pytest.fixture(params=START_METHODS)
def start_method(request: pytest.FixtureRequest) -> str:
    """Each pool test runs once per start method."""
    return str(request.param)
