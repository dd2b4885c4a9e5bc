"""Download throughput behind latency, and memory, through the real pipeline.

In one run, against the emulator in a process of its own:

1. N items behind L ms of server latency, downloaded by
   ``ImageService.download_images`` with C downloads in flight (workers x
   slots): efficiency = (N x L / C) / measured time, the physical limit being 1.
   Goals: >= 0.95 at 8 in flight, >= 0.90 at 16.
2. Total RSS (parent + workers) while 16 downloads are in flight (goal <= 160 MB).
3. Peak RSS of the worker streaming one large video (default 1 GB; goal <= 64 MB).

Each efficiency is the median of several runs after a warm-up, min and max shown.

    python benchmarks/throughput.py [--items 1000] [--latency-ms 100] [--runs 5] [--video-mb 1024]
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import tempfile
import threading
import time
from multiprocessing.connection import Connection
from pathlib import Path

import psutil
from _server import RemoteEmulator, emulator_process

from veo3dl import DownloadPool, FlowClient, ImageService, ImageStore

MB = 1024 * 1024


def service_for(flow: RemoteEmulator, folder: Path, pool: DownloadPool) -> ImageService:
    client = FlowClient(
        flow.credentials, labs_url=flow.labs_url, api_url=flow.api_url, max_pages=100_000
    )
    service = ImageService(
        client, ImageStore(folder / "c.db"), pool=pool, storage_root=folder / "media"
    )
    service.sync_metadata("bench")
    return service


class RssSampler:
    """Samples total RSS of a process tree in the background; keeps the peak."""

    def __init__(self, pids: list[int]) -> None:
        self.pids = pids
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            total = 0
            for pid in self.pids:
                try:
                    total += psutil.Process(pid).memory_info().rss
                except psutil.NoSuchProcess:
                    continue
            self.peak = max(self.peak, total)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def efficiency_runs(
    flow: RemoteEmulator, workers: int, slots: int, latency: float, runs: int
) -> tuple[list[float], int]:
    in_flight = workers * slots
    results = []
    peak_rss = 0
    with DownloadPool(workers, slots_per_worker=slots) as pool:
        for n in range(runs + 1):  # the first is the warm-up
            with tempfile.TemporaryDirectory() as tmp:
                service = service_for(flow, Path(tmp), pool)
                pids = [psutil.Process().pid, *pool.worker_pids()]
                with RssSampler(pids) as sampler:
                    started = time.perf_counter()
                    report = service.download_images("bench")
                    elapsed = time.perf_counter() - started
                assert report.ok and report.downloaded == len(flow.names), report
                service.store.close()
            if n:
                results.append(len(flow.names) * latency / in_flight / elapsed)
                peak_rss = max(peak_rss, sampler.peak)
    return results, peak_rss


def _measure_memory(conn: Connection, flow: RemoteEmulator, workers: int, slots: int) -> None:
    _, rss = efficiency_runs(flow, workers, slots, 0.1, 1)
    conn.send(rss)


def memory_in_fresh_process(flow: RemoteEmulator, workers: int, slots: int) -> int:
    """Peak total RSS (parent + workers) of a download in a process that did nothing before.

    A benchmark harness that already ran other figures carries their garbage
    in its heap; a user's program that downloads does not.
    """
    parent, child = multiprocessing.Pipe()
    process = multiprocessing.get_context("spawn").Process(
        target=_measure_memory, args=(child, flow, workers, slots)
    )
    process.start()
    child.close()
    try:
        if not parent.poll(600):
            raise RuntimeError("the memory measurement did not finish")
        return int(parent.recv())
    finally:
        process.join(30)
        if process.is_alive():
            process.kill()


def video_peak(video_mb: int) -> tuple[int, float]:
    size = video_mb * MB
    with (
        emulator_process(items=1, videos=1, video_bytes=(size, size)) as flow,
        tempfile.TemporaryDirectory() as tmp,
    ):
        with DownloadPool(1, slots_per_worker=1) as pool:
            service = service_for(flow, Path(tmp), pool)
            [pid] = pool.worker_pids()
            started = time.perf_counter()
            report = service.download_images("bench")
            elapsed = time.perf_counter() - started
            assert report.ok and report.bytes == size, report
            with open(f"/proc/{pid}/status") as status:
                peak_kb = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
    return peak_kb * 1024, size / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--latency-ms", type=float, default=100.0)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--video-mb", type=int, default=1024)
    args = parser.parse_args()
    latency = args.latency_ms / 1000
    print(
        f"{args.items} items of ~60 KB behind {args.latency_ms:g} ms, median of {args.runs} runs after a warm-up"
    )
    with emulator_process(
        items=args.items, videos=0, latency=latency, image_bytes=(50_000, 70_000)
    ) as flow:
        # Slots per worker, not more processes: 16 interpreters would cost ~40 MB each.
        for workers, slots, goal in ((1, 8, 0.95), (2, 8, 0.90)):
            effs, rss = efficiency_runs(flow, workers, slots, latency, args.runs)
            print(
                f"  {workers * slots:2d} in flight ({workers} workers x {slots} slots): efficiency "
                f"{statistics.median(effs):.3f} (min {min(effs):.3f}, max {max(effs):.3f}; goal >= {goal})"
                f"   total RSS peak {rss / MB:.0f} MB"
            )
    if args.video_mb:
        peak, rate = video_peak(args.video_mb)
        print(
            f"  {args.video_mb} MB video through one worker: peak RSS {peak / MB:.0f} MB (goal <= 64), {rate / MB:.0f} MB/s"
        )


if __name__ == "__main__":
    main()
