"""The coordinator: one token renewal for many workers, pauses pushed to all."""

from __future__ import annotations

import multiprocessing
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path

import coordjobs
import pytest

from veo3dl import LoginRequired
from veo3dl._coordination import Coordinator, CoordinatorAddress, CoordinatorLink
from veo3dl._protocol import SessionToken
from veo3dl._tokens import SessionTokenSource

pytestmark = [pytest.mark.timeout(60), pytest.mark.usefixtures("no_leftover_processes")]


class CountingMint:
    def __init__(self, error: Exception | None = None) -> None:
        self.calls = 0
        self.error = error
        self.lock = threading.Lock()

    def __call__(self) -> SessionToken:
        with self.lock:
            self.calls += 1
            if self.error is not None:
                raise self.error
            time.sleep(0.05)  # a slow session endpoint makes the race real
            expires = datetime.now(timezone.utc) + timedelta(hours=1)
            return SessionToken(access_token=f"ya29.minted-{self.calls}", expires=expires)


def executor(workers: int) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))


def test_many_workers_refused_at_once_cost_one_renewal() -> None:
    mint = CountingMint()
    source = SessionTokenSource(initial="ya29.old", mint=mint)
    with Coordinator(source) as coordinator, executor(6) as pool:
        futures = [
            pool.submit(coordjobs.refresh_token, coordinator.address, "ya29.old") for _ in range(12)
        ]
        tokens = {f.result(timeout=30) for f in futures}
    assert tokens == {"ya29.minted-1"}
    assert mint.calls == 1


def test_a_pause_reaches_every_worker(tmp_path: Path) -> None:
    source = SessionTokenSource(initial="ya29.t", mint=None)
    host = "https://aisandbox-pa.googleapis.com"
    with Coordinator(source) as coordinator, executor(3) as pool:
        ready = [tmp_path / f"ready-{n}" for n in range(2)]
        waiters = [
            pool.submit(coordjobs.wait_for_pause, coordinator.address, host, str(p)) for p in ready
        ]
        deadline = time.monotonic() + 30
        while not all(p.exists() for p in ready):
            assert time.monotonic() < deadline
            time.sleep(0.01)
        announced_at = time.time()
        assert pool.submit(coordjobs.announce_pause, coordinator.address, host, 30.0).result(
            timeout=30
        )
        ends = [f.result(timeout=30) for f in waiters]
    assert all(end >= announced_at + 29 for end in ends)


def test_a_worker_connecting_later_learns_current_pauses() -> None:
    source = SessionTokenSource(initial="ya29.t", mint=None)
    with Coordinator(source) as coordinator:
        early = CoordinatorLink(coordinator.address, fallback=_fail)
        early.pause("https://h", 20.0)
        late = CoordinatorLink(coordinator.address, fallback=_fail)
        deadline = time.monotonic() + 10
        while not late.paused_until("https://h"):
            assert time.monotonic() < deadline
            time.sleep(0.005)


def test_renewal_errors_reach_the_worker() -> None:
    source = SessionTokenSource(initial="ya29.old", mint=CountingMint(LoginRequired()))
    with Coordinator(source) as coordinator:
        link = CoordinatorLink(coordinator.address, fallback=_fail)
        with pytest.raises(LoginRequired, match="log in again"):
            link.refresh("ya29.old")


def test_unreachable_coordinator_falls_back_to_a_local_source() -> None:
    local = SessionTokenSource(initial="ya29.local", mint=None)
    address = CoordinatorAddress("/nonexistent/veo3dl.sock", b"k" * 32)
    link = CoordinatorLink(address, fallback=lambda: local)
    assert link.get() == "ya29.local"


def test_wrong_key_is_refused_and_the_coordinator_keeps_serving() -> None:
    source = SessionTokenSource(initial="ya29.t", mint=None)
    with Coordinator(source) as coordinator:
        bad = CoordinatorAddress(coordinator.address.address, b"wrong" * 8)
        intruder = CoordinatorLink(
            bad, fallback=lambda: SessionTokenSource(initial="ya29.own", mint=None)
        )
        assert intruder.get() == "ya29.own"
        good = CoordinatorLink(coordinator.address, fallback=_fail)
        assert good.get() == "ya29.t"


def test_address_repr_hides_the_key() -> None:
    address = CoordinatorAddress("/tmp/x", b"secret-key-bytes")
    assert "secret" not in repr(address)


def _fail() -> SessionTokenSource:
    raise AssertionError("the coordinator should have answered")
