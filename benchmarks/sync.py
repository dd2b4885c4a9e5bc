"""Sync throughput: a 10,000-item emulator library, no latency.

Prints items/s and the catalogue's share of the wall time (goal: under 15 %),
as the median of several runs after a warm-up.  The emulator runs in a
process of its own, as a real service would.

    python benchmarks/sync.py [--items 10000] [--runs 5]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from _server import RemoteEmulator, emulator_process

from veo3dl import FlowClient, ImageService, ImageStore


class TimedStore(ImageStore):
    """An ImageStore that adds up the time spent inside its write transactions."""

    store_seconds = 0.0

    @contextlib.contextmanager
    def transaction(self, doing: str = "writing the catalogue") -> Iterator:  # type: ignore[override]
        started = time.perf_counter()
        try:
            with super().transaction(doing) as db:
                yield db
        finally:
            self.store_seconds += time.perf_counter() - started


def one_run(flow: RemoteEmulator, folder: Path, n: int) -> tuple[float, float, int]:
    store = TimedStore(folder / f"run{n}.db")
    client = FlowClient(
        flow.credentials, labs_url=flow.labs_url, api_url=flow.api_url, max_pages=100_000
    )
    service = ImageService(client, store)
    started = time.perf_counter()
    report = service.sync_metadata("bench")
    wall = time.perf_counter() - started
    client.close()
    store.close()
    return wall, store.store_seconds, report.seen


def measure_sync(items: int, runs: int) -> tuple[list[float], list[float]]:
    """items/s and the store's share of wall time, per run after a warm-up."""
    with (
        emulator_process(items=items, videos=items // 10) as flow,
        tempfile.TemporaryDirectory() as tmp,
    ):
        one_run(flow, Path(tmp), -1)  # warm-up
        results = [one_run(flow, Path(tmp), n) for n in range(runs)]
    assert all(seen == items for _, _, seen in results), "a sync missed items"
    return [seen / wall for wall, _, seen in results], [store / wall for wall, store, _ in results]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    rates, shares = measure_sync(args.items, args.runs)
    print(f"sync of {args.items} items, {args.runs} runs after a warm-up")
    print(
        f"  items/s      median {statistics.median(rates):8.0f}   (min {min(rates):.0f}, max {max(rates):.0f})"
    )
    print(
        f"  store share  median {statistics.median(shares):8.1%}   "
        f"(min {min(shares):.1%}, max {max(shares):.1%})  goal < 15 %"
    )


if __name__ == "__main__":
    main()
