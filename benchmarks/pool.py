"""DownloadPool dispatch throughput and crash recovery, against the stdlib pools.

In one run, with the same worker count:

* jobs/s for N no-op jobs through veo3dl's DownloadPool, ProcessPoolExecutor
  (``submit`` per job) and multiprocessing.Pool (``imap_unordered``,
  chunksize 1, and ``apply_async`` per job) — each the median of several
  runs after a warm-up, with min and max;
* the time from SIGKILL of a busy worker to its job running again on a
  fresh worker (goal < 0.5 s).

    python benchmarks/pool.py [--workers 4] [--jobs 20000] [--runs 5] [--start-method forkserver]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import multiprocessing
import os
import signal
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from _jobs import mark_and_wait, noop

from veo3dl import DownloadPool


def timed(fn: Callable[[], int]) -> float:
    started = time.perf_counter()
    done = fn()
    elapsed = time.perf_counter() - started
    return done / elapsed


def veo3dl_submit(pool: DownloadPool, n: int) -> int:
    futures = [pool.submit(i) for i in range(n)]
    return sum(1 for f in futures if f.result() is not None)


def veo3dl_stream(pool: DownloadPool, n: int) -> int:
    return sum(1 for outcome in pool.as_completed(range(n), in_flight=1024) if outcome.ok)


def ppe_submit(ex: concurrent.futures.ProcessPoolExecutor, n: int) -> int:
    futures = [ex.submit(noop, i) for i in range(n)]
    return sum(1 for f in concurrent.futures.as_completed(futures) if f.result() is not None)


def mp_imap(pool: multiprocessing.pool.Pool, n: int) -> int:
    return sum(1 for _ in pool.imap_unordered(noop, range(n), chunksize=1))


def mp_apply(pool: multiprocessing.pool.Pool, n: int) -> int:
    results = [pool.apply_async(noop, (i,)) for i in range(n)]
    return sum(1 for r in results if r.get() is not None)


def measure(label: str, run: Callable[[], int], runs: int) -> tuple[str, float, float, float]:
    run()  # warm-up: workers started, code paths hot
    rates = [timed(run) for _ in range(runs)]
    return label, statistics.median(rates), min(rates), max(rates)


def recovery(workers: int, method: str, runs: int) -> list[float]:
    """Seconds from SIGKILL of a busy worker to its job starting again."""
    delays = []
    with (
        DownloadPool(workers, mark_and_wait, start_method=method) as pool,
        tempfile.TemporaryDirectory() as tmp,
    ):
        pool.submit((tmp, "warm"))
        Path(tmp, "release-warm").touch()
        for n in range(runs):
            key = f"k{n}"
            future = pool.submit((tmp, key))
            first = Path(tmp, f"start-{key}-0")
            while not first.exists() or not first.read_text():
                time.sleep(0.0005)
            pid = int(first.read_text().split()[1])
            killed_at = time.time()
            os.kill(pid, signal.SIGKILL)
            second = Path(tmp, f"start-{key}-1")
            while not second.exists() or not second.read_text():
                time.sleep(0.0005)
            delays.append(float(second.read_text().split()[0]) - killed_at)
            Path(tmp, f"release-{key}").touch()
            future.result(timeout=60)
    return delays


def dispatch_rows(w: int, n: int, runs: int, method: str) -> list[tuple[str, float, float, float]]:
    """jobs/s (median, min, max) for each pool, in one run."""
    rows = []
    with DownloadPool(w, noop, start_method=method) as pool:
        rows.append(measure("veo3dl DownloadPool.submit", lambda: veo3dl_submit(pool, n), runs))
        rows.append(
            measure("veo3dl DownloadPool.as_completed", lambda: veo3dl_stream(pool, n), runs)
        )
    context = multiprocessing.get_context(method)
    with concurrent.futures.ProcessPoolExecutor(w, mp_context=context) as ex:
        rows.append(measure("ProcessPoolExecutor.submit", lambda: ppe_submit(ex, n), runs))
    with context.Pool(w) as mpool:
        rows.append(
            measure(
                "multiprocessing.Pool.imap_unordered(chunksize=1)", lambda: mp_imap(mpool, n), runs
            )
        )
        rows.append(measure("multiprocessing.Pool.apply_async", lambda: mp_apply(mpool, n), runs))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--start-method", default="forkserver")
    args = parser.parse_args()
    w, n, method = args.workers, args.jobs, args.start_method
    rows = dispatch_rows(w, n, args.runs, method)
    ours = rows[0][1]
    print(
        f"{n} no-op jobs, {w} workers, start method {method}, median of {args.runs} runs after a warm-up"
    )
    print(f"{'':50} {'jobs/s':>9} {'min':>9} {'max':>9} {'veo3dl submit / this':>22}")
    for label, median, low, high in rows:
        print(f"{label:50} {median:9.0f} {low:9.0f} {high:9.0f} {ours / median:21.2f}x")
    delays = recovery(w, method, args.runs)
    print(
        f"SIGKILL of a busy worker -> its job running again: median {statistics.median(delays) * 1000:.0f} ms "
        f"(min {min(delays) * 1000:.0f}, max {max(delays) * 1000:.0f}; goal < 500 ms)"
    )


if __name__ == "__main__":
    main()
