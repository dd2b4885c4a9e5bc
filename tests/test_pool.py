"""DownloadPool's crash table, run under every start method.

Each test has a timeout and checks that no process survives it.  Busy jobs
block on a file the test creates (``pooljobs.Block``), never on a timer.
"""

from __future__ import annotations

import os
import pickle
import signal
import threading
import time
from concurrent.futures import CancelledError
from pathlib import Path

import pooljobs
import psutil
import pytest
from conftest import poll, release, started, started_pid, wait_until_gone

from veo3dl import (
    ConfigError,
    DownloadPool,
    HandlerError,
    JobTimeout,
    PoolBroken,
    PoolClosed,
    WorkerCrashed,
)

pytestmark = [pytest.mark.timeout(90), pytest.mark.usefixtures("no_leftover_processes")]


def make_pool(start_method: str, workers: int = 2, **kwargs) -> DownloadPool:
    return DownloadPool(workers, pooljobs.handle, start_method=start_method, **kwargs)


# ------------------------------------------------------------------ basics


def test_results_and_exceptions_come_back(start_method: str) -> None:
    with make_pool(start_method) as pool:
        assert pool.submit(21).result(timeout=30) == 21
        with pytest.raises(ValueError, match="boom") as info:
            pool.submit(("raise", "boom")).result(timeout=30)
        assert "Traceback" in str(info.value.__cause__)  # the worker's traceback travels too
        assert pool.submit(("big", 300_000)).result(timeout=30) == b"x" * 300_000


def test_ten_thousand_tiny_jobs(start_method: str) -> None:
    with DownloadPool(4, pooljobs.square, start_method=start_method) as pool:
        outcomes = list(pool.as_completed(range(10_000), in_flight=256))
        status = pool.status()
    assert sorted(o.result for o in outcomes) == sorted(x * x for x in range(10_000))
    assert all(o.ok and o.result == o.job * o.job for o in outcomes)
    assert status.completed == 10_000 and status.failed == 0 and status.restarts == 0


def test_as_completed_keeps_a_bounded_window(start_method: str) -> None:
    pulled = 0

    def jobs():
        nonlocal pulled
        for n in range(2_000):
            pulled += 1
            yield n

    seen = 0
    with DownloadPool(2, pooljobs.square, start_method=start_method) as pool:
        for _ in pool.as_completed(jobs(), in_flight=10):
            seen += 1
            assert pulled - seen <= 10
    assert seen == 2_000


def test_on_result_callback_sees_every_outcome(start_method: str) -> None:
    seen = []
    with make_pool(start_method) as pool:
        outcomes = list(pool.as_completed([1, ("raise", "x"), 3], on_result=seen.append))
    assert seen == outcomes
    assert sorted(str(o.result) for o in outcomes if o.ok) == ["1", "3"]
    assert [type(o.exception) for o in outcomes if not o.ok] == [ValueError]


# ------------------------------------------------------------------ crashes


def test_kill_idle_worker_is_replaced(start_method: str) -> None:
    with make_pool(start_method) as pool:
        pids = poll(lambda: len(pool.worker_pids()) == 2 and pool.worker_pids())
        assert pool.submit(1).result(timeout=30) == 1  # workers are up
        os.kill(pids[0], signal.SIGKILL)
        poll(
            lambda: pids[0] not in pool.worker_pids() and len(pool.worker_pids()) == 2,
            what="replacement",
        )
        assert [pool.submit(n).result(timeout=30) for n in range(5)] == list(range(5))
        assert pool.status().restarts == 1


def test_kill_busy_worker_reruns_its_job_only(start_method: str, tmp_path: Path) -> None:
    with make_pool(start_method) as pool:
        victim = pool.submit(pooljobs.Block(str(tmp_path), "a"))
        other = pool.submit(pooljobs.Block(str(tmp_path), "b"))
        first = poll(lambda: started(tmp_path, "a"))[0]
        poll(lambda: started(tmp_path, "b"))
        os.kill(started_pid(first), signal.SIGKILL)
        rerun = poll(lambda: len(started(tmp_path, "a")) == 2 and started(tmp_path, "a")[1])
        assert started_pid(rerun) != started_pid(first)
        assert not other.done()  # the other worker's job was never touched
        release(tmp_path, "a")
        release(tmp_path, "b")
        assert victim.result(timeout=30)[0] == "a"
        assert other.result(timeout=30)[0] == "b"
        assert len(started(tmp_path, "b")) == 1
        status = pool.status()
        assert status.restarts == 1 and status.failed == 0


def test_kill_worker_while_it_sends_a_large_result(start_method: str, tmp_path: Path) -> None:
    size = 64 * 1024 * 1024
    with make_pool(start_method, workers=1) as pool:
        job = pooljobs.Block(str(tmp_path), "big", result=b"y" * (256 * 1024))
        fut = pool.submit(("big", size))
        pid = pool.submit(("pid",)).result(timeout=30)
        # The next big result is being pickled and written when the kill lands.
        fut2 = pool.submit(("big", size))
        assert fut.result(timeout=60) == b"x" * size
        os.kill(pid, signal.SIGKILL)
        assert fut2.result(timeout=60) == b"x" * size
        blocked = pool.submit(job)
        poll(lambda: started(tmp_path, "big"))
        release(tmp_path, "big")
        assert blocked.result(timeout=30) == b"y" * (256 * 1024)


@pytest.mark.parametrize("code", [13, None], ids=["os._exit", "segfault"])
def test_poison_job_fails_alone_after_max_attempts(
    start_method: str, tmp_path: Path, code: int | None
) -> None:
    with make_pool(start_method, max_attempts=3) as pool:
        poison = pool.submit(pooljobs.Crash(str(tmp_path), "p", code=code))
        healthy = [pool.submit(n) for n in range(20)]
        with pytest.raises(WorkerCrashed) as info:
            poison.result(timeout=60)
        assert [f.result(timeout=30) for f in healthy] == list(range(20))
    error = info.value
    assert error.attempts == 3
    assert error.item == "crash-p"
    if code is None:
        assert error.signal_name == "SIGSEGV" and error.exitcode == -signal.SIGSEGV
    else:
        assert error.exitcode == 13 and error.signal_name is None
    assert len(list(tmp_path.glob("crash-p-*"))) == 3
    assert pickle.loads(pickle.dumps(error)).attempts == 3


def test_crash_then_success_on_rerun(start_method: str, tmp_path: Path) -> None:
    with make_pool(start_method, max_attempts=3) as pool:
        assert pool.submit(pooljobs.Crash(str(tmp_path), "once", times=1)).result(timeout=60) == (
            "survived",
            "once",
        )
        assert pool.status().restarts == 1


def test_crashing_initializer_breaks_the_pool_clearly(start_method: str) -> None:
    pool = make_pool(start_method, initializer=pooljobs.failing_initializer)
    try:
        future = pool.submit(1)
        with pytest.raises(PoolBroken, match="initializer exploded on purpose"):
            future.result(timeout=60)
        with pytest.raises(PoolBroken):
            pool.submit(2)
    finally:
        pool.shutdown()
    assert pool.worker_pids() == []


# ------------------------------------------------------------ pickling


def test_unpicklable_job_raises_at_submit(start_method: str) -> None:
    with make_pool(start_method) as pool, pytest.raises(ConfigError, match="cannot be pickled"):
        pool.submit(threading.Lock())


def test_unpicklable_result_fails_only_that_job(start_method: str) -> None:
    with make_pool(start_method) as pool:
        bad = pool.submit("unpicklable-result")
        good = pool.submit(5)
        with pytest.raises(HandlerError, match="could not be pickled"):
            bad.result(timeout=30)
        assert good.result(timeout=30) == 5
        assert pool.status().restarts == 0


@pytest.mark.parametrize("job", ["unpicklable-exception", "unrebuildable-exception"])
def test_unpicklable_exception_is_wrapped(start_method: str, job: str) -> None:
    with make_pool(start_method) as pool:
        with pytest.raises(HandlerError) as info:
            pool.submit(job).result(timeout=30)
        assert pool.submit(1).result(timeout=30) == 1
    error = info.value
    assert error.exc_type.endswith(("LockError", "TwoArgError"))
    assert "Traceback" in error.remote_traceback
    assert "pooljobs.py" in error.remote_traceback


# ------------------------------------------------------------ timeouts


def test_job_timeout_kills_and_replaces_the_worker(start_method: str, tmp_path: Path) -> None:
    with make_pool(start_method, workers=1, job_timeout=0.5, kill_grace=0.5) as pool:
        stuck = pool.submit(pooljobs.Block(str(tmp_path), "stuck"))
        with pytest.raises(JobTimeout) as info:
            stuck.result(timeout=30)
        assert info.value.timeout == 0.5
        first_pid = started_pid(started(tmp_path, "stuck")[0])
        assert pool.submit(7).result(timeout=30) == 7
        assert wait_until_gone([first_pid]) == []
        assert len(started(tmp_path, "stuck")) == 1  # a timed-out job is not re-run


# ------------------------------------------------------------ cancel, status


def test_cancel_before_dispatch(start_method: str, tmp_path: Path) -> None:
    with make_pool(start_method, workers=1) as pool:
        busy = pool.submit(pooljobs.Block(str(tmp_path), "busy"))
        poll(lambda: started(tmp_path, "busy"))
        waiting = pool.submit(pooljobs.Block(str(tmp_path), "never"))
        assert waiting.cancel()
        release(tmp_path, "busy")
        release(tmp_path, "never")
        busy.result(timeout=30)
        assert pool.submit(3).result(timeout=30) == 3
    assert waiting.cancelled()
    assert started(tmp_path, "never") == []
    assert pool.status().cancelled == 1


def test_status_counts(start_method: str, tmp_path: Path) -> None:
    with make_pool(start_method, workers=2) as pool:
        blocked = [pool.submit(pooljobs.Block(str(tmp_path), f"s{n}")) for n in range(3)]
        poll(lambda: pool.status().busy == 2, what="two busy")
        status = pool.status()
        assert status.queued == 1 and status.workers_alive == 2
        pool.submit(("raise", "x"))
        for n in range(3):
            release(tmp_path, f"s{n}")
        for future in blocked:
            future.result(timeout=30)
        poll(lambda: pool.status().failed == 1)
        status = pool.status()
        assert (status.completed, status.failed, status.busy, status.queued) == (3, 1, 0, 0)


def test_slots_run_jobs_concurrently_and_a_death_reruns_all_held(
    start_method: str, tmp_path: Path
) -> None:
    with make_pool(start_method, workers=2, slots_per_worker=3) as pool:
        futures = [pool.submit(pooljobs.Block(str(tmp_path), f"j{n}")) for n in range(6)]
        poll(lambda: all(started(tmp_path, f"j{n}") for n in range(6)), what="six at once")
        pids = {started_pid(started(tmp_path, f"j{n}")[0]) for n in range(6)}
        assert len(pids) == 2
        victim = next(iter(pids))
        held = [n for n in range(6) if started_pid(started(tmp_path, f"j{n}")[0]) == victim]
        assert len(held) == 3
        os.kill(victim, signal.SIGKILL)
        for n in range(6):
            release(tmp_path, f"j{n}")
        assert sorted(f.result(timeout=30)[0] for f in futures) == [f"j{n}" for n in range(6)]
        # Each job of the dead worker ran once more (alone: nobody knows which one killed it).
        assert all(len(started(tmp_path, f"j{n}")) == 2 for n in held)
        assert pool.status().failed == 0


def test_max_jobs_per_worker_recycles(start_method: str) -> None:
    with DownloadPool(1, pooljobs.handle, start_method=start_method, max_jobs_per_worker=3) as pool:
        pids = [pool.submit(("pid",)).result(timeout=30) for _ in range(7)]
        assert pool.status().restarts == 0
    assert len(set(pids)) == 3
    assert pids[0] == pids[1] == pids[2] != pids[3]


# ------------------------------------------------------------ shutdown


def test_shutdown_while_every_worker_is_busy(start_method: str, tmp_path: Path) -> None:
    pool = make_pool(start_method)
    futures = [pool.submit(pooljobs.Block(str(tmp_path), f"w{n}")) for n in range(3)]
    poll(lambda: started(tmp_path, "w0") and started(tmp_path, "w1"))
    stopper = threading.Thread(target=pool.shutdown)
    stopper.start()
    poll(lambda: pool.status().closed)
    with pytest.raises(PoolClosed):
        pool.submit(1)
    for n in range(3):
        release(tmp_path, f"w{n}")
    stopper.join(30)
    assert not stopper.is_alive()
    assert sorted(f.result(timeout=1)[0] for f in futures) == ["w0", "w1", "w2"]
    assert pool.worker_pids() == []


def test_terminate_while_busy_fails_unfinished_jobs(start_method: str, tmp_path: Path) -> None:
    pool = make_pool(start_method)
    futures = [pool.submit(pooljobs.Block(str(tmp_path), f"t{n}")) for n in range(4)]
    poll(lambda: started(tmp_path, "t0") and started(tmp_path, "t1"))
    pids = pool.worker_pids()
    pool.terminate()
    for future in futures:
        with pytest.raises(PoolClosed):
            future.result(timeout=10)
    assert wait_until_gone(pids) == []


def test_shutdown_after_every_worker_died(start_method: str) -> None:
    pool = make_pool(start_method)
    assert pool.submit(1).result(timeout=30) == 1
    pids = pool.worker_pids()
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    assert wait_until_gone(pids) == []
    started_at = time.monotonic()
    pool.shutdown()
    assert time.monotonic() - started_at < 15
    assert pool.worker_pids() == []


def test_shutdown_cancel_futures(start_method: str, tmp_path: Path) -> None:
    pool = make_pool(start_method, workers=1)
    running = pool.submit(pooljobs.Block(str(tmp_path), "r"))
    poll(lambda: started(tmp_path, "r"))
    queued = [pool.submit(n) for n in range(5)]
    release(tmp_path, "r")
    pool.shutdown(cancel_futures=True)
    assert running.result(timeout=1)[0] == "r"
    for future in queued:
        assert future.cancelled() or future.result(timeout=1) in range(5)
    assert any(f.cancelled() for f in queued)
    with pytest.raises(CancelledError):
        next(f for f in queued if f.cancelled()).result()


def test_exiting_the_block_with_an_error_cancels_queued_work(
    start_method: str, tmp_path: Path
) -> None:
    with pytest.raises(RuntimeError), make_pool(start_method, workers=1) as pool:
        busy = pool.submit(pooljobs.Block(str(tmp_path), "e"))
        poll(lambda: started(tmp_path, "e"))
        later = pool.submit(pooljobs.Block(str(tmp_path), "e2"))
        release(tmp_path, "e")
        raise RuntimeError("caller failed")
    assert busy.result(timeout=1)[0] == "e"
    assert later.cancelled() or later.done()


# --------------------------------------------------------- parent death

PARENT_SCRIPT = """
import os, sys, time
sys.path.insert(0, {tests!r})
import pooljobs
from veo3dl import DownloadPool
pool = DownloadPool(3, pooljobs.handle, start_method={method!r})
futures = [pool.submit(pooljobs.Block({folder!r}, f"p{{n}}")) for n in range(3)]
while len(list(__import__("pathlib").Path({folder!r}).glob("started-*"))) < 3:
    time.sleep(0.01)
print(" ".join(map(str, pool.worker_pids())), flush=True)
time.sleep(600)
"""


def test_workers_exit_when_the_parent_is_killed(start_method: str, tmp_path: Path) -> None:
    import subprocess
    import sys

    script = PARENT_SCRIPT.format(
        tests=str(Path(__file__).parent), method=start_method, folder=str(tmp_path)
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        line = parent.stdout.readline()
        pids = [int(p) for p in line.split()]
        assert len(pids) == 3
        helpers = [
            p.pid for p in psutil.Process(parent.pid).children(recursive=True) if p.pid not in pids
        ]
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        assert wait_until_gone(pids, timeout=10) == [], "workers outlived their parent"
        assert wait_until_gone(helpers, timeout=10) == [], "helper processes outlived the parent"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait(10)
        parent.stdout.close()


# --------------------------------------------------------- configuration


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"workers": 0}, "workers"),
        ({"slots_per_worker": 0}, "slots_per_worker"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"job_timeout": -1}, "job_timeout"),
        ({"start_method": "teleport"}, "start_method"),
        ({"handler": lambda job: job}, "handler cannot be pickled"),
    ],
)
def test_bad_configuration_is_a_config_error(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        DownloadPool(**kwargs)
