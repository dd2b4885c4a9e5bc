"""Run every benchmark in one go and write docs/benchmarks.md.

    python benchmarks/run_all.py [--runs 5] [--quick]

Every figure is the median of --runs runs after a warm-up, with min and max,
measured in this one run on this machine; comparisons are ratios of figures
taken side by side, so a noisy shared machine shifts them together.
``--quick`` shrinks the workloads to check the script works (the numbers are
then not the ones the goals are about).
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
from pathlib import Path

import pool as pool_bench
import psutil
import sync as sync_bench
import throughput
import versus
from _server import emulator_process

import veo3dl

DOCS = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
MB = 1024 * 1024


LIMITS = """## What limits each figure

- **Latency-bound**: not the server. The emulator uses a few % of a core (the last column), and
  bare `requests` threads on the same server set the floor of a Python client; curl is no faster.
  What veo3dl loses beyond that is its own per-file work in the worker: sniffing, the completeness
  check, SHA-256, path checks, two fsyncs and a rename. At 8 in flight one worker runs the 8
  downloads on threads, so that work queues behind the GIL; at 16 two workers use both cores.
  This table drives the pool on signed URLs; through `ImageService.download_images`
  (`benchmarks/throughput.py`: the file base64 inside JSON, planning, leases, one token mint,
  the catalogue) each file costs 3 to 4 ms beyond the 100 ms, about 2 ms of it CPU.
- **Bandwidth-bound**: loopback and the CPU. nginx serves from the page cache; veo3dl hashes every
  byte and fsyncs every file on top, curl and aria2c do neither.
- **Dispatch**: the parent's supervisor thread (pickling, pipe writes, futures); the no-op jobs
  cost the workers nothing.
- **Memory**: interpreters. Each worker process is ~35 MB before it downloads anything, which is
  why 16 in flight run as 2 workers × 8 slots (threads) rather than 16 processes.
- **Sync**: the emulator answering 556 listing pages and the client parsing them; the
  catalogue's share is the figure given.
"""


def fmt(values: list[float], spec: str) -> str:
    return f"{statistics.median(values):{spec}} ({min(values):{spec}}–{max(values):{spec}})"


def machine() -> str:
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next(
                line.split(":", 1)[1].strip() for line in info if line.startswith("model name")
            )
    except (OSError, StopIteration):
        pass
    memory = psutil.virtual_memory().total / 1024**3
    return (
        f"{cpu}, {os.cpu_count()} cores, {memory:.0f} GiB RAM, Linux {platform.release()}, "
        f"Python {platform.python_version()}, veo3dl {veo3dl.__version__}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=DOCS)
    args = parser.parse_args()
    runs, quick = args.runs, args.quick
    items, files, jobs = (120, 20, 4000) if quick else (400, 200, 20_000)
    video_mb, sync_items = (64, 2000) if quick else (1024, 10_000)
    out: list[str] = []
    say = out.append
    tools = {
        "curl": versus.ensure_tool("curl", "curl"),
        "aria2c": versus.ensure_tool("aria2c", "aria2"),
        "nginx": versus.ensure_tool("nginx", "nginx-light"),
    }
    print("latency-bound ...", file=sys.stderr)
    latency = versus.latency_bound(runs, items, 0.1, tools["curl"], tools["aria2c"])
    print("bandwidth-bound ...", file=sys.stderr)
    bandwidth = versus.bandwidth_bound(
        runs, files, 8, tools["curl"], tools["aria2c"], tools["nginx"]
    )
    print("dispatch ...", file=sys.stderr)
    dispatch = pool_bench.dispatch_rows(4, jobs, runs, "forkserver")
    recovery = pool_bench.recovery(4, "forkserver", runs)
    print("memory ...", file=sys.stderr)
    memory = []
    with emulator_process(items=items, videos=0, latency=0.1, image_bytes=(55_000, 65_000)) as flow:
        for workers, slots in ((1, 4), (2, 8), (16, 1)):
            rss = throughput.memory_in_fresh_process(flow, workers, slots)
            memory.append((workers, slots, rss))
    video_peak, video_rate = throughput.video_peak(video_mb)
    print("sync ...", file=sys.stderr)
    sync_rates, sync_shares = sync_bench.measure_sync(sync_items, runs)

    def missing(tool: str) -> str:
        return f"({tool} not available)"

    say("# Benchmarks\n")
    say(f"Measured {datetime.date.today().isoformat()} on {machine()} with\n")
    say(f"```sh\npython benchmarks/run_all.py --runs {runs}{' --quick' if quick else ''}\n```\n")
    say(
        "Each figure is the median of "
        f"{runs} runs after a warm-up, with min–max in brackets, all taken in one run of the script. "
        "The servers (the Flow emulator, nginx) run in processes of their own.\n"
    )
    say(f"## Latency-bound: {items} files of ~60 KB behind 100 ms\n")
    say("Efficiency = (files × latency / in flight) / measured time; 1.0 is the physical limit.\n")
    say("| in flight | veo3dl | curl --parallel | aria2c -j | requests, C threads | emulator CPU |")
    say("|---:|---:|---:|---:|---:|---:|")
    for row in latency:
        curl = fmt(row["curl"], ".3f") if "curl" in row else missing("curl")
        aria = fmt(row["aria2c"], ".3f") if "aria2c" in row else missing("aria2c")
        say(
            f"| {row['C']} | {fmt(row['veo3dl'], '.3f')} | {curl} | {aria} | "
            f"{fmt(row['requests'], '.3f')} | {row['server_cpu']:.0%} of a core |"
        )
    say(
        "\nveo3dl runs its whole pipeline on the same signed URLs (sniff, completeness check, SHA-256, fsync, "
        "atomic rename); curl, aria2c and the bare requests threads only write the bytes. "
        "Goals: ≥ 0.95 at 8, ≥ 0.90 at 16.\n"
    )
    say(f"## Bandwidth-bound: {files} files of 8 MB from nginx on loopback\n")
    if bandwidth:
        say(
            "| in flight | veo3dl MB/s | curl MB/s | aria2c MB/s | veo3dl / curl | veo3dl / aria2c |"
        )
        say("|---:|---:|---:|---:|---:|---:|")
        for row in bandwidth:
            ours = statistics.median(row["veo3dl"])
            curl = statistics.median(row["curl"]) if "curl" in row else None
            aria = statistics.median(row["aria2c"]) if "aria2c" in row else None
            say(
                f"| {row['C']} | {fmt(row['veo3dl'], '.0f')} | "
                f"{fmt(row['curl'], '.0f') if curl else missing('curl')} | "
                f"{fmt(row['aria2c'], '.0f') if aria else missing('aria2c')} | "
                f"{ours / curl:.2f}x | " + (f"{ours / aria:.2f}x |" if aria else "– |")
            )
        say(
            "\nveo3dl also hashes and fsyncs every file; curl and aria2c leave them in the page cache.\n"
        )
    else:
        say("nginx could not be had on this machine: not measured.\n")
    say(f"## Dispatch: {jobs} no-op jobs, 4 workers (forkserver)\n")
    say("| pool | jobs/s | veo3dl submit / this |")
    say("|---|---:|---:|")
    ours = dispatch[0][1]
    for label, median, low, high in dispatch:
        say(f"| {label} | {median:.0f} ({low:.0f}–{high:.0f}) | {ours / median:.2f}x |")
    say(
        f"\nSIGKILL of a busy worker to its job running again on a fresh worker: "
        f"{fmt([d * 1000 for d in recovery], '.0f')} ms (goal < 500 ms).\n"
    )
    say("## Memory\n")
    say(
        "Total RSS of the parent and its workers, peak while downloading behind 100 ms latency, "
        "measured in a fresh process (a harness that ran the other figures first carries their heap):\n"
    )
    say("| in flight | workers × slots | total RSS |")
    say("|---:|---|---:|")
    for workers, slots, rss in memory:
        say(f"| {workers * slots} | {workers} × {slots} | {rss / MB:.0f} MB |")
    say(
        f"\nPeak RSS of the one worker streaming a {video_mb} MB video through the API (base64 in JSON): "
        f"{video_peak / MB:.0f} MB (goal ≤ 64 MB), at {video_rate / MB:.0f} MB/s. Goal for 16 in flight: ≤ 160 MB.\n"
    )
    say(f"## Sync: a {sync_items}-item library, no latency\n")
    say(
        f"{fmt(sync_rates, '.0f')} items/s; the catalogue's share of the wall time {fmt([s * 100 for s in sync_shares], '.1f')} % (goal < 15 %).\n"
    )
    say(LIMITS)
    text = "\n".join(out) + "\n"
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
