"""Adversarial tests of DownloadPool: races, shutdown paths, leaks, odd handlers.

The first group are regression tests of bugs an adversarial review found in
the supervisor (each docstring says what once went wrong); the others guard
behaviour the crash table in ``test_pool.py`` does not cover.

The handlers at module level run inside the workers, which import this module
by name (``tests/`` is on ``sys.path`` under every start method).  Blocked jobs
wait for a file to appear, never on a timer.
"""

from __future__ import annotations

import gc
import multiprocessing.resource_tracker
import os
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pooljobs
import psutil
import pytest
from conftest import START_METHODS, poll, release, started, started_pid, wait_until_gone

from veo3dl import (
    DownloadPool,
    HandlerError,
    JobTimeout,
    PoolClosed,
    WorkerCrashed,
)

pytestmark = [pytest.mark.timeout(90), pytest.mark.usefixtures("no_leftover_processes")]

TESTS = str(Path(__file__).parent)
_DEADLINE = 60.0  # a blocked job (or helper process) gives up after this


# ------------------------------------------------------------------ helpers


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def kill_quietly(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass


def pool_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith("veo3dl-")}


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


# ------------------------------------------------ handlers run in workers


def _wait_for_file(path: str) -> bool:
    deadline = time.monotonic() + _DEADLINE
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def ignore_sigterm() -> None:
    """Worker initializer: the handler (and the worker) ignore SIGTERM."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


_GRANDCHILD = """
import os, signal, sys, time
folder, ignore = sys.argv[1], sys.argv[2] == "1"
if ignore:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
open(os.path.join(folder, "grandchild-ready"), "w").close()
deadline = time.monotonic() + 60
while not os.path.exists(os.path.join(folder, "release-grandchild")):
    if time.monotonic() > deadline:
        break
    time.sleep(0.01)
"""


def run_subprocess_and_block(job: tuple[str, bool]) -> None:
    """Start a helper process (optionally ignoring SIGTERM), record its pid, then hang."""
    folder, ignores_sigterm = job
    child = subprocess.Popen(
        [sys.executable, "-c", _GRANDCHILD, folder, "1" if ignores_sigterm else "0"]
    )
    _wait_for_file(os.path.join(folder, "grandchild-ready"))
    tmp = Path(folder, "grandchild-pid.tmp")
    tmp.write_text(str(child.pid))
    tmp.rename(Path(folder, "grandchild-pid"))
    _wait_for_file(os.path.join(folder, "release-never"))


def colocated(job: tuple[str, str, str]) -> str:
    """``("block", folder, key)``: a well-behaved job that waits for ``release-<key>``.

    ``("poison", folder, key)``: kills its worker every time it runs; the first
    time only once a block job has started in this same worker process, so
    that the two die together.
    """
    kind, folder, key = job
    pid = os.getpid()
    if kind == "block":
        n = sum(1 for p in Path(folder).iterdir() if p.name.startswith(f"started-{key}-"))
        Path(folder, f"started-{key}-{pid}-{n}").touch()
        _wait_for_file(os.path.join(folder, f"release-{key}"))
        return key
    runs = sum(1 for p in Path(folder).iterdir() if p.name.startswith(f"ran-{key}-"))
    Path(folder, f"ran-{key}-{runs}").touch()
    deadline = time.monotonic() + _DEADLINE
    while runs == 0 and not any(
        p.name.startswith("started-") and f"-{pid}-" in p.name for p in Path(folder).iterdir()
    ):
        if time.monotonic() > deadline:
            break
        time.sleep(0.005)
    os._exit(13)


class ExitWhenUnpickled:
    """Pickles fine in the worker; unpickling it calls ``sys.exit`` (a BaseException)."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (sys.exit, ("unpickled in the parent",))


def unpickle_bomb(job: Any) -> Any:
    return ExitWhenUnpickled() if job == "bomb" else job


# ================================================= regressions


def test_shut_down_pool_never_writes_to_a_recycled_fd(start_method: str, tmp_path: Path) -> None:
    """Once the pool has closed its wake-up pipe, no later call writes to that fd number."""
    pool = DownloadPool(1, pooljobs.handle, start_method=start_method)
    assert pool.submit(1).result(timeout=30) == 1
    pool.shutdown()
    # The descriptors the pool closed are free again: the program opens files on them.
    files = [os.open(tmp_path / f"file-{n}", os.O_RDWR | os.O_CREAT) for n in range(64)]
    try:
        pool.shutdown()  # documented as idempotent
        del pool
        gc.collect()  # the finalizer of a dropped pool
        written = {n: os.fstat(fd).st_size for n, fd in enumerate(files) if os.fstat(fd).st_size}
    finally:
        for fd in files:
            os.close(fd)
    assert written == {}, f"a closed pool wrote into unrelated files: {written}"


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_sys_exit_in_a_done_callback_does_not_strand_later_futures(tmp_path: Path) -> None:
    """A done-callback raising SystemExit does not end the thread that completes futures."""

    def fatal(_future: Any) -> None:
        sys.exit("callback gave up")

    pool = DownloadPool(1, pooljobs.handle, start_method="forkserver")
    try:
        first = pool.submit(pooljobs.Block(str(tmp_path), "first"))
        first.add_done_callback(fatal)
        release(tmp_path, "first")
        assert first.result(timeout=30)[0] == "first"
        later = pool.submit(2)
        assert later.result(timeout=2) == 2
    finally:
        pool.terminate()


def test_shutdown_from_a_done_callback_does_not_stall(tmp_path: Path) -> None:
    """shutdown() from a done-callback does not wait on its own thread."""
    pool = DownloadPool(1, pooljobs.handle, start_method="forkserver")
    took: list[float] = []

    def stop(_future: Any) -> None:
        began = time.monotonic()
        pool.shutdown()
        took.append(time.monotonic() - began)

    try:
        first = pool.submit(pooljobs.Block(str(tmp_path), "cb"))
        first.add_done_callback(stop)
        release(tmp_path, "cb")
        assert first.result(timeout=30)[0] == "cb"
        poll(lambda: took, timeout=2.0, what="shutdown() called in a done-callback to return")
    finally:
        pool.shutdown(wait=False)


def test_a_job_sharing_a_worker_with_a_poison_job_is_not_blamed(
    start_method: str, tmp_path: Path
) -> None:
    """Two jobs die together: neither is charged, each re-runs alone, the poison is found."""
    folder = str(tmp_path)
    with DownloadPool(
        1, colocated, slots_per_worker=2, max_attempts=3, start_method=start_method
    ) as pool:
        innocent = pool.submit(("block", folder, "innocent"))
        poison = pool.submit(("poison", folder, "poison"))
        poll(lambda: len(started(tmp_path, "innocent")) == 2, what="the innocent job's re-run")
        assert not poison.done()  # a suspect waits for a worker of its own
        release(tmp_path, "innocent")
        assert innocent.result(timeout=60) == "innocent"
        with pytest.raises(WorkerCrashed) as crashed:
            poison.result(timeout=60)
    assert crashed.value.attempts == 3
    assert len(list(tmp_path.glob("ran-poison-*"))) == 4  # one shared run, uncharged, then 3


def test_timeout_kills_a_handler_subprocess_that_ignores_sigterm(tmp_path: Path) -> None:
    """A timed-out worker that dies of SIGTERM still gets its process group SIGKILLed."""
    grandchild = None
    try:
        with DownloadPool(
            1,
            run_subprocess_and_block,
            start_method="forkserver",
            job_timeout=1.0,
            kill_grace=0.5,
        ) as pool:
            future = pool.submit((str(tmp_path), True))
            poll((tmp_path / "grandchild-pid").exists, what="the subprocess")
            grandchild = int((tmp_path / "grandchild-pid").read_text())
            with pytest.raises(JobTimeout):
                future.result(timeout=30)
        assert wait_until_gone([grandchild], timeout=1.5) == [], (
            "the handler's subprocess outlived the timed-out job"
        )
    finally:
        if grandchild is not None:
            kill_quietly(grandchild)


def test_interpreter_exit_with_a_dropped_running_pool_is_prompt(tmp_path: Path) -> None:
    """A pool dropped while busy still has its workers killed, promptly, at interpreter exit."""
    hung = _run_exit_scripts(tmp_path, drop=True)
    assert hung == [], f"interpreter exit hung with a dropped pool under {hung}"


def test_a_result_raising_systemexit_on_unpickling_fails_only_its_job() -> None:
    """A result whose unpickling raises a BaseException fails its own job and no other."""
    with DownloadPool(1, unpickle_bomb, start_method="forkserver") as pool:
        bomb = pool.submit("bomb")
        later = pool.submit(3)
        assert later.result(timeout=30) == 3
        with pytest.raises(HandlerError):
            bomb.result(timeout=10)


def test_status_after_terminate_has_no_busy_jobs(tmp_path: Path) -> None:
    """After terminate(), status() counts every job failed and none busy or queued."""
    pool = DownloadPool(2, pooljobs.handle, start_method="forkserver")
    futures = [pool.submit(pooljobs.Block(str(tmp_path), f"t{n}")) for n in range(3)]
    poll(lambda: pool.status().busy == 2, what="two busy")
    pool.terminate()
    for future in futures:
        with pytest.raises(PoolClosed):
            future.result(timeout=10)
    status = pool.status()
    assert (status.busy, status.queued, status.failed) == (0, 0, 3), status


def test_status_is_consistent_during_kill_grace(tmp_path: Path) -> None:
    """A timed-out job no longer counts as busy while its worker is in its kill grace."""
    with DownloadPool(
        1,
        pooljobs.handle,
        start_method="forkserver",
        job_timeout=0.3,
        kill_grace=1.5,
        initializer=ignore_sigterm,
    ) as pool:
        future = pool.submit(pooljobs.Block(str(tmp_path), "grace"))
        with pytest.raises(JobTimeout):
            future.result(timeout=30)
        status = pool.status()  # the worker is still in its grace period
        assert (status.busy, status.queued, status.failed) == (0, 0, 1), status


def test_job_timeout_covers_a_job_held_by_a_stopped_worker() -> None:
    """job_timeout also covers a job sent to a worker that never starts it (SIGSTOP)."""
    pool = DownloadPool(
        1, pooljobs.handle, start_method="forkserver", job_timeout=0.5, kill_grace=0.2
    )
    try:
        pid = pool.submit(("pid",)).result(timeout=30)
        os.kill(pid, signal.SIGSTOP)
        future = pool.submit(7)
        try:
            outcome = future.result(timeout=3)
        except JobTimeout:
            outcome = "timed out"
        assert outcome in (7, "timed out")
    finally:
        pool.terminate()  # SIGKILL reaches a stopped process


def test_a_long_job_does_not_hold_back_jobs_queued_behind_it(tmp_path: Path) -> None:
    """Jobs prefetched behind a job that turns out long are taken back for idle workers."""
    with DownloadPool(4, pooljobs.handle, start_method="forkserver") as pool:
        assert [f.result(timeout=30) for f in [pool.submit(n) for n in range(400)]] == list(
            range(400)
        )  # the pool has learnt that jobs are short
        before = [pool.submit(n) for n in range(200)]
        long_job = pool.submit(pooljobs.Block(str(tmp_path), "long"))
        after = [pool.submit(n) for n in range(200)]
        try:
            poll(
                lambda: all(f.done() for f in before + after),
                timeout=3,
                what="the short jobs",
            )
        except AssertionError:
            stuck = sum(not f.done() for f in before + after)
            raise AssertionError(
                f"{stuck} short jobs wait behind one long job while 3 workers are idle"
            ) from None
        finally:
            release(tmp_path, "long")
        assert long_job.result(timeout=30)[0] == "long"


# ================================================= guards (passing today)


def test_timeout_kills_the_handlers_subprocess(start_method: str, tmp_path: Path) -> None:
    """The process group kill reaches a subprocess the handler started."""
    grandchild = None
    try:
        with DownloadPool(
            1,
            run_subprocess_and_block,
            start_method=start_method,
            job_timeout=1.0,
            kill_grace=0.5,
        ) as pool:
            future = pool.submit((str(tmp_path), False))
            poll((tmp_path / "grandchild-pid").exists, what="the subprocess")
            grandchild = int((tmp_path / "grandchild-pid").read_text())
            with pytest.raises(JobTimeout):
                future.result(timeout=30)
        assert wait_until_gone([grandchild], timeout=5) == []
    finally:
        if grandchild is not None:
            kill_quietly(grandchild)


def test_timeout_sigkills_a_handler_that_ignores_sigterm(start_method: str, tmp_path: Path) -> None:
    with DownloadPool(
        1,
        pooljobs.handle,
        start_method=start_method,
        job_timeout=0.4,
        kill_grace=0.3,
        initializer=ignore_sigterm,
    ) as pool:
        future = pool.submit(pooljobs.Block(str(tmp_path), "deaf"))
        with pytest.raises(JobTimeout):
            future.result(timeout=30)
        first = started_pid(started(tmp_path, "deaf")[0])
        assert wait_until_gone([first], timeout=10) == []
        assert pool.submit(6).result(timeout=30) == 6
        assert len(started(tmp_path, "deaf")) == 1


def test_timeout_of_a_sigstopped_worker(start_method: str, tmp_path: Path) -> None:
    with DownloadPool(
        2, pooljobs.handle, start_method=start_method, job_timeout=0.5, kill_grace=0.3
    ) as pool:
        stuck = pool.submit(pooljobs.Block(str(tmp_path), "stopped"))
        pid = started_pid(poll(lambda: started(tmp_path, "stopped"))[0])
        os.kill(pid, signal.SIGSTOP)
        with pytest.raises(JobTimeout):
            stuck.result(timeout=30)
        assert wait_until_gone([pid], timeout=10) == []
        assert sorted(pool.submit(n).result(timeout=30) for n in range(4)) == [0, 1, 2, 3]
        poll(lambda: len(pool.worker_pids()) == 2, what="replacement")


def test_a_timeout_does_not_use_up_the_attempts_of_a_job_on_the_same_worker(
    start_method: str, tmp_path: Path
) -> None:
    """max_attempts=1: the co-resident job is killed with the worker, then re-run."""
    with DownloadPool(
        1,
        pooljobs.handle,
        start_method=start_method,
        slots_per_worker=2,
        max_attempts=1,
        job_timeout=2.0,
        kill_grace=0.2,
    ) as pool:
        hung = pool.submit(pooljobs.Block(str(tmp_path), "hung"))
        poll(lambda: started(tmp_path, "hung"))
        # Stagger the starts so that only "hung" reaches the timeout (not a synchronisation):
        # the bystander has run at most 1 s of its 2 s when the worker is killed.
        began = time.monotonic()
        poll(lambda: time.monotonic() - began > 1.0)
        bystander = pool.submit(pooljobs.Block(str(tmp_path), "by"))
        poll(lambda: started(tmp_path, "by"))
        with pytest.raises(JobTimeout):
            hung.result(timeout=30)
        poll(lambda: len(started(tmp_path, "by")) == 2, what="the bystander's re-run")
        release(tmp_path, "by")
        assert bystander.result(timeout=30)[0] == "by"


def test_big_job_to_a_worker_killed_while_the_parent_is_still_writing_it(
    start_method: str, tmp_path: Path
) -> None:
    """A partly written 8 MiB job frame to a dead worker must not reach the next one."""
    with DownloadPool(1, pooljobs.handle, start_method=start_method, slots_per_worker=2) as pool:
        big, holder = _kill_a_worker_with_a_half_written_job(pool, tmp_path, hold_supervisor=False)
        assert big.result(timeout=60) == b"j" * _BIG_JOB
        assert holder.result(timeout=60)[0] == "h"
        assert [pool.submit(n).result(timeout=30) for n in range(3)] == [0, 1, 2]


def test_stale_events_of_a_dead_worker_never_reach_its_replacement(tmp_path: Path) -> None:
    """Events of a dead worker in the same select() batch never touch its replacement, whose pipes
    may reuse its fd numbers."""
    # With no free descriptor below the pool's, a spawn replacement gets exactly the dead
    # worker's fd numbers (as in a fresh program); fork often does too, forkserver not.
    multiprocessing.resource_tracker.ensure_running()  # (its fd must not shift the layout)
    fillers = _fill_fd_holes()
    pool = DownloadPool(1, pooljobs.handle, start_method="spawn", slots_per_worker=2)
    try:
        big, holder = _kill_a_worker_with_a_half_written_job(pool, tmp_path, hold_supervisor=True)
        assert big.result(timeout=3) == b"j" * _BIG_JOB
        assert holder.result(timeout=3)[0] == "h"
    finally:
        pool.terminate()
        for fd in fillers:
            os.close(fd)


def _fill_fd_holes() -> list[int]:
    """Open /dev/null on every free descriptor number below the highest open one."""
    highest = max(int(fd) for fd in open_fds())
    fillers = []
    while True:
        fd = os.open(os.devnull, os.O_RDONLY)
        if fd > highest:
            os.close(fd)
            return fillers
        fillers.append(fd)


def test_a_dead_workers_stale_event_cannot_freeze_the_supervisor() -> None:
    """A stale event of a dead worker never reads a blocking fd of its replacement."""
    fillers = _fill_fd_holes()
    hole = [os.open(os.devnull, os.O_RDONLY) for _ in range(2)]  # the program's own files
    pool = DownloadPool(1, pooljobs.handle, start_method="fork")
    try:
        assert pool.submit(1).result(timeout=30) == 1
        supervisor = pool._supervisor
        (worker,) = supervisor._workers
        watch = select.poll()
        watch.register(worker.result_fd, select.POLLIN)
        watch.register(worker.sentinel, select.POLLIN)
        read_end, write_end = supervisor._wake.fds()
        # (white box) keep the supervisor off select() meanwhile: drain() blocks on this lock
        with supervisor._wake._lock:
            os.write(write_end, b"\0")
            poll(
                lambda: not select.select([read_end], [], [], 0)[0],
                what="the supervisor to take the wake-up",
            )
            for fd in hole:  # the program closes two files...
                os.close(fd)
            hole.clear()
            os.kill(worker.pid, signal.SIGKILL)  # ...and an idle worker dies
            poll(lambda: len(watch.poll(0)) == 2, what="the worker's pipe and sentinel")
        assert pool.submit(2).result(timeout=3) == 2
    finally:
        for pid in pool.worker_pids():  # a supervisor stuck reading a sentinel gets EOF
            kill_quietly(pid)
        pool.terminate()
        for fd in fillers + hole:
            os.close(fd)


_BIG_JOB = 8 * 1024 * 1024


def _kill_a_worker_with_a_half_written_job(
    pool: DownloadPool, tmp_path: Path, *, hold_supervisor: bool
) -> tuple[Any, Any]:
    """A worker holding a running job and a half-sent 8 MiB job is SIGKILLed.

    White box: waits for the parent's outbox to hold the rest of the frame and,
    with *hold_supervisor*, keeps the supervisor off ``select`` (blocked on its
    lock after a wake-up) until the worker is dead, so that the worker's exit,
    result-EOF and job-pipe events all arrive in one ``select`` batch.
    """
    supervisor = pool._supervisor
    holder = pool.submit(pooljobs.Block(str(tmp_path), "h"))
    pid = started_pid(poll(lambda: started(tmp_path, "h"))[0])
    os.kill(pid, signal.SIGSTOP)  # stops reading its job pipe
    big = pool.submit(pooljobs.Block(str(tmp_path), "h", result=b"j" * _BIG_JOB))
    poll(lambda: any(w.outbox for w in list(supervisor._workers)), what="a full job pipe")
    if hold_supervisor:
        (worker,) = supervisor._workers
        watch = select.poll()
        watch.register(worker.job_fd, select.POLLOUT)
        watch.register(worker.result_fd, select.POLLIN)
        watch.register(worker.sentinel, select.POLLIN)
        wake = supervisor._wake
        read_end, write_end = wake.fds()
        with wake._lock:  # drain() clears the flag under it: the supervisor blocks there
            os.write(write_end, b"\0")
            poll(
                lambda: not select.select([read_end], [], [], 0)[0],
                what="the supervisor to take the wake-up",
            )
            os.kill(pid, signal.SIGKILL)
            # every descriptor of the dead worker is ready (its last thread has exited)
            poll(lambda: len(watch.poll(0)) == 3, what="the worker's pipes and sentinel")
            release(tmp_path, "h")  # (no file is opened while the replacement starts)
    else:
        os.kill(pid, signal.SIGKILL)
        release(tmp_path, "h")
    return big, holder


def test_big_jobs_and_results_with_slots_and_recycling(start_method: str) -> None:
    jobs = [("big", 70_000 + 4_099 * n) for n in range(40)]  # results > 64 KiB
    with DownloadPool(
        2, pooljobs.handle, start_method=start_method, slots_per_worker=3, max_jobs_per_worker=5
    ) as pool:
        outcomes = list(pool.as_completed(jobs, in_flight=12))
        echoed = pool.submit(b"z" * 300_000).result(timeout=30)  # a job > 64 KiB
        status = pool.status()
    assert all(o.ok and o.result == b"x" * o.job[1] for o in outcomes)
    assert echoed == b"z" * 300_000
    assert status.completed == 41 and status.failed == 0 and status.restarts == 0


def test_killing_busy_and_idle_workers_during_graceful_shutdown(
    start_method: str, tmp_path: Path
) -> None:
    pool = DownloadPool(3, pooljobs.handle, start_method=start_method)
    busy = [pool.submit(pooljobs.Block(str(tmp_path), f"g{n}")) for n in range(2)]
    poll(lambda: started(tmp_path, "g0") and started(tmp_path, "g1"))
    busy_pids = {started_pid(started(tmp_path, f"g{n}")[0]) for n in range(2)}
    idle = [pid for pid in pool.worker_pids() if pid not in busy_pids]
    stopper = threading.Thread(target=pool.shutdown, daemon=True)
    stopper.start()
    poll(lambda: pool.status().closed)
    victim = started_pid(started(tmp_path, "g0")[0])
    os.kill(victim, signal.SIGKILL)
    for pid in idle:
        os.kill(pid, signal.SIGKILL)
    poll(lambda: len(started(tmp_path, "g0")) == 2, what="the re-run during shutdown")
    release(tmp_path, "g0")
    release(tmp_path, "g1")
    stopper.join(30)
    assert not stopper.is_alive()
    assert sorted(f.result(timeout=1)[0] for f in busy) == ["g0", "g1"]
    assert pool.worker_pids() == []


def test_terminate_while_workers_keep_crashing(start_method: str, tmp_path: Path) -> None:
    threads_before = pool_threads()
    pool = DownloadPool(2, pooljobs.handle, start_method=start_method, max_attempts=1_000)
    crashing = [pool.submit(pooljobs.Crash(str(tmp_path), f"c{n}")) for n in range(2)]
    others = [pool.submit(n) for n in range(20)]
    poll(lambda: pool.status().restarts >= 3, what="restarts")
    began = time.monotonic()
    pool.terminate()
    assert time.monotonic() - began < 10
    for future in crashing + others:
        try:
            future.result(timeout=5)
        except PoolClosed:
            pass
    assert all(f.exception(timeout=0) is not None for f in crashing)
    assert pool.worker_pids() == []
    assert pool_threads() - threads_before == set()


def test_no_fd_or_thread_left_by_any_shutdown_path(start_method: str) -> None:
    warm = DownloadPool(1, pooljobs.handle, start_method=start_method)  # forkserver, imports
    warm.submit(0).result(timeout=30)
    warm.shutdown()
    del warm
    gc.collect()
    fds_before = open_fds()
    threads_before = pool_threads()

    def graceful(pool: DownloadPool) -> None:
        pool.shutdown()

    def terminate(pool: DownloadPool) -> None:
        pool.terminate()

    def no_wait(pool: DownloadPool) -> None:
        pool.shutdown(wait=False)

    def dropped(pool: DownloadPool) -> None:
        pass

    for how in (graceful, terminate, no_wait, dropped):
        pool = DownloadPool(2, pooljobs.handle, start_method=start_method, slots_per_worker=2)
        assert [pool.submit(n).result(timeout=30) for n in range(4)] == [0, 1, 2, 3]
        pids = pool.worker_pids()
        how(pool)
        del pool
        gc.collect()
        poll(
            lambda: pool_threads() - threads_before == set(),
            what=f"pool threads to end after {how.__name__}",
        )
        assert wait_until_gone(pids) == []
    gc.collect()
    assert open_fds() - fds_before == set()


def test_done_callbacks_that_submit_more_jobs(start_method: str) -> None:
    done = threading.Event()
    results: list[int] = []
    with DownloadPool(2, pooljobs.square, start_method=start_method) as pool:

        def chain(future: Any) -> None:
            results.append(future.result())
            if len(results) < 30:
                pool.submit(len(results)).add_done_callback(chain)
            else:
                done.set()

        pool.submit(0).add_done_callback(chain)
        assert done.wait(30)
    assert results == [n * n for n in range(30)]


def test_shutdown_without_wait_finishes_the_work_and_cleans_up(
    start_method: str, tmp_path: Path
) -> None:
    threads_before = pool_threads()
    pool = DownloadPool(2, pooljobs.handle, start_method=start_method)
    blocked = pool.submit(pooljobs.Block(str(tmp_path), "nw"))
    rest = [pool.submit(n) for n in range(10)]
    poll(lambda: started(tmp_path, "nw"))
    pids = pool.worker_pids()
    began = time.monotonic()
    pool.shutdown(wait=False)
    assert time.monotonic() - began < 1
    with pytest.raises(PoolClosed):
        pool.submit(1)
    release(tmp_path, "nw")
    assert blocked.result(timeout=30)[0] == "nw"
    assert [f.result(timeout=30) for f in rest] == list(range(10))
    poll(lambda: pool_threads() - threads_before == set(), what="pool threads to end")
    assert wait_until_gone(pids) == []


def test_a_dropped_pool_still_finishes_its_jobs(start_method: str, tmp_path: Path) -> None:
    threads_before = pool_threads()
    pool = DownloadPool(1, pooljobs.handle, start_method=start_method)
    future = pool.submit(pooljobs.Block(str(tmp_path), "drop"))
    poll(lambda: started(tmp_path, "drop"))
    pids = pool.worker_pids()
    del pool
    gc.collect()
    release(tmp_path, "drop")
    assert future.result(timeout=30)[0] == "drop"
    poll(lambda: pool_threads() - threads_before == set(), what="pool threads to end")
    assert wait_until_gone(pids) == []


def test_a_pool_created_by_a_short_lived_thread_keeps_its_workers(start_method: str) -> None:
    """PR_SET_PDEATHSIG is per thread: the creating thread ending must not kill workers."""
    box: list[DownloadPool] = []
    creator = threading.Thread(
        target=lambda: box.append(DownloadPool(2, pooljobs.handle, start_method=start_method))
    )
    creator.start()
    creator.join(30)
    pool = box[0]
    try:
        assert pool.submit(1).result(timeout=30) == 1
        pids = sorted(pool.worker_pids())
        assert [pool.submit(n).result(timeout=30) for n in range(6)] == list(range(6))
        assert sorted(pool.worker_pids()) == pids
        assert pool.status().restarts == 0
    finally:
        pool.shutdown()


def test_interpreter_exit_with_a_running_pool_is_prompt(tmp_path: Path) -> None:
    """A pool still referenced at exit, busy with jobs that ignore SIGTERM."""
    hung = _run_exit_scripts(tmp_path, drop=False)
    assert hung == [], f"interpreter exit hung under {hung}"


# ------------------------------------------------- interpreter-exit runner

_EXIT_SCRIPT = """
import gc, pathlib, sys, time
sys.path.insert(0, {tests!r})
import pooljobs
import test_pool_adversarial as adv
from veo3dl import DownloadPool
folder = {folder!r}
pool = DownloadPool(2, pooljobs.handle, start_method={method!r}, initializer=adv.ignore_sigterm)
futures = [pool.submit(pooljobs.Block(folder, f"x{{n}}")) for n in range(2)]
while len(list(pathlib.Path(folder).glob("started-*"))) < 2:
    time.sleep(0.01)
print(" ".join(map(str, pool.worker_pids())), flush=True)
if {drop!r}:
    del pool
    gc.collect()
"""


def _run_exit_scripts(tmp_path: Path, *, drop: bool, limit: float = 6.0) -> list[str]:
    """Run one script per start method at once; return the methods whose exit hung."""
    runs: dict[str, tuple[subprocess.Popen[str], Path]] = {}
    workers: dict[str, list[int]] = {}
    hung: list[str] = []
    try:
        for method in START_METHODS:
            folder = tmp_path / method
            folder.mkdir()
            script = _EXIT_SCRIPT.format(tests=TESTS, folder=str(folder), method=method, drop=drop)
            runs[method] = (
                subprocess.Popen(
                    [sys.executable, "-c", script],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.DEVNULL,
                    text=True,
                ),
                folder,
            )
        deadline = time.monotonic() + 60
        for method, (proc, _folder) in runs.items():
            ready, _, _ = select.select(
                [proc.stdout], [], [], max(0.0, deadline - time.monotonic())
            )
            assert ready, f"{method}: the script never started its jobs"
            workers[method] = [int(p) for p in proc.stdout.readline().split()]
            assert len(workers[method]) == 2, method
        deadline = time.monotonic() + limit
        for method, (proc, _folder) in runs.items():
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                hung.append(method)
        if not hung:
            for method, pids in workers.items():
                assert wait_until_gone(pids, timeout=10) == [], f"{method}: workers survived exit"
    finally:
        for proc, folder in runs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
            proc.stdout.close()
            for n in range(2):
                (folder / f"release-x{n}").touch()
        for pids in workers.values():
            for pid in wait_until_gone(pids, timeout=10):
                kill_quietly(pid)
    return hung
