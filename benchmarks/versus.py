"""veo3dl side by side with curl and aria2c, on the same URLs from the same server.

* latency-bound: N small files behind L ms of server latency (the emulator's
  signed file URLs), C downloads in flight; efficiency = (N x L / C) / time.
* bandwidth-bound: M files of S MB from nginx on loopback, no latency; MB/s.

veo3dl runs its real pipeline on those URLs (DownloadPool, default handler:
stream, sniff, check whole, SHA-256, fsync, rename); curl and aria2c just
write the bytes.  Tools missing from the machine are installed with apt-get
when possible; a tool that cannot be had is reported as such.

    python benchmarks/versus.py [--runs 5]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import requests
from _server import emulator_process

from veo3dl import DownloadJob, DownloadPool
from veo3dl.testing._media import make_blob

MB = 1024 * 1024


def ensure_tool(command: str, package: str) -> str | None:
    """The tool's path, installing the Debian package if needed; None if impossible."""
    found = shutil.which(command)
    if found:
        return found
    apt = shutil.which("apt-get")
    if apt and os.geteuid() == 0:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for step in ([apt, "update", "-q"], [apt, "install", "-y", "-q", package]):
            subprocess.run(step, env=env, capture_output=True, timeout=600, check=False)
    return shutil.which(command) or shutil.which(command, path="/usr/sbin:/sbin")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ---------------------------------------------------------------- clients


def run_veo3dl(urls: list[str], folder: Path, workers: int, slots: int, pool: DownloadPool) -> None:
    jobs = [
        DownloadJob(
            name=f"item{n}",
            destination=f"files/{n}",
            storage_root=str(folder),
            fife_url=url,
            media_type="VIDEO" if url.endswith(".mp4") else "IMAGE",  # the handler checks it
        )
        for n, url in enumerate(urls)
    ]
    failures = [o for o in pool.as_completed(jobs) if not (o.ok and o.result.ok)]
    assert not failures, failures[0]


def run_curl(curl: str, urls: list[str], folder: Path, concurrency: int) -> None:
    config = folder / "curl.cfg"
    config.write_text(
        "".join(f'url = "{u}"\noutput = "{folder}/{n}.bin"\n' for n, u in enumerate(urls))
    )
    subprocess.run(
        [curl, "--silent", "--no-progress-meter", "--show-error", "--fail", "--globoff", "--parallel", "--parallel-max", str(concurrency),
         "--parallel-immediate", "--config", str(config)],
        check=True, timeout=900,
    )  # fmt: skip


def run_requests_threads(urls: list[str], folder: Path, concurrency: int) -> None:
    """The floor of a Python client: C threads, a requests.Session each, bytes straight to disk."""
    pending = list(enumerate(urls))
    lock = threading.Lock()

    def work() -> None:
        with requests.Session() as session:
            while True:
                with lock:
                    if not pending:
                        return
                    n, url = pending.pop()
                response = session.get(url, timeout=60)
                response.raise_for_status()
                (folder / f"{n}.bin").write_bytes(response.content)

    threads = [threading.Thread(target=work) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def run_aria2(aria2c: str, urls: list[str], folder: Path, concurrency: int) -> None:
    listing = folder / "aria2.txt"
    listing.write_text("".join(f"{u}\n  out={n}.bin\n" for n, u in enumerate(urls)))
    subprocess.run(
        [aria2c, "-q", "-j", str(concurrency), "-x", "1", "-s", "1", "--file-allocation=none",
         "--allow-overwrite=true", "--auto-file-renaming=false", "--check-certificate=false",
         "--max-tries=3", "-d", str(folder), "-i", str(listing)],
        check=True, timeout=900,
    )  # fmt: skip


# ------------------------------------------------------------------ timing


def timed_runs(
    run: Callable[[Path], None], runs: int, watch_pid: int | None
) -> tuple[list[float], float]:
    """Seconds per run (after a warm-up) and the server's CPU use meanwhile (share of one core)."""
    seconds: list[float] = []
    cpu_used = wall_used = 0.0
    server = psutil.Process(watch_pid) if watch_pid else None
    for n in range(runs + 1):
        with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
            before = sum(server.cpu_times()[:2]) if server else 0.0
            started = time.perf_counter()
            run(Path(tmp))
            elapsed = time.perf_counter() - started
            if server:
                cpu_used += sum(server.cpu_times()[:2]) - before
                wall_used += elapsed
            if n:
                seconds.append(elapsed)
    return seconds, (cpu_used / wall_used if wall_used else 0.0)


def summary(values: list[float]) -> tuple[float, float, float]:
    return statistics.median(values), min(values), max(values)


# --------------------------------------------------------------- scenarios


def latency_bound(
    runs: int, items: int, latency: float, curl: str | None, aria2c: str | None
) -> list[dict]:
    rows = []
    with emulator_process(
        items=items, videos=0, latency=latency, image_bytes=(55_000, 65_000)
    ) as flow:
        server_pid = _emulator_pid(flow.files_url)
        for concurrency, workers, slots in ((8, 1, 8), (16, 2, 8)):
            ideal = items * latency / concurrency
            row = {"C": concurrency}
            with DownloadPool(workers, slots_per_worker=slots) as pool:
                times, cpu = timed_runs(
                    lambda d: run_veo3dl(list(flow.fife_urls), d, workers, slots, pool),
                    runs,
                    server_pid,
                )
            row["veo3dl"] = [ideal / t for t in times]
            row["server_cpu"] = cpu
            times, _ = timed_runs(
                lambda d: run_requests_threads(list(flow.fife_urls), d, concurrency), runs, None
            )
            row["requests"] = [ideal / t for t in times]
            if curl:
                times, _ = timed_runs(
                    lambda d: run_curl(curl, list(flow.fife_urls), d, concurrency), runs, None
                )
                row["curl"] = [ideal / t for t in times]
            if aria2c:
                times, _ = timed_runs(
                    lambda d: run_aria2(aria2c, list(flow.fife_urls), d, concurrency), runs, None
                )
                row["aria2c"] = [ideal / t for t in times]
            rows.append(row)
    return rows


def _emulator_pid(url: str) -> int | None:
    port = int(url.rsplit(":", 1)[1])
    for conn in psutil.net_connections("tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr.port == port:
            return conn.pid
    return None


@contextlib.contextmanager
def nginx_serving(nginx: str, root: Path) -> Iterator[str]:
    """nginx on a free loopback port serving *root*; stopped afterwards."""
    port = free_port()
    prefix = Path(tempfile.mkdtemp(prefix="veo3dl-nginx-"))
    (prefix / "logs").mkdir()
    conf = prefix / "nginx.conf"
    conf.write_text(
        f"""worker_processes 1; daemon off; pid {prefix}/nginx.pid; error_log {prefix}/logs/error.log;
events {{ worker_connections 1024; }}
http {{ access_log off; sendfile on; tcp_nopush on; keepalive_requests 100000;
  types {{ video/mp4 mp4; }} default_type application/octet-stream;
  client_body_temp_path {prefix}/body; proxy_temp_path {prefix}/proxy; fastcgi_temp_path {prefix}/fcgi;
  uwsgi_temp_path {prefix}/uwsgi; scgi_temp_path {prefix}/scgi;
  server {{ listen 127.0.0.1:{port}; root {root}; }} }}
"""
    )
    process = subprocess.Popen(
        [nginx, "-p", str(prefix), "-c", str(conf)], stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", port), timeout=1),
            ):
                break
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError("nginx did not start")
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.send_signal(signal.SIGQUIT)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        shutil.rmtree(prefix, ignore_errors=True)


def bandwidth_bound(
    runs: int, files: int, size_mb: int, curl: str | None, aria2c: str | None, nginx: str | None
) -> list[dict]:
    if nginx is None:
        return []
    rows = []
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as served:
        os.chmod(served, 0o755)  # nginx's workers run unprivileged
        data = make_blob("mp4", "bandwidth", size_mb * MB).content()
        for n in range(files):
            Path(served, f"{n}.mp4").write_bytes(data)
        total = files * size_mb
        with nginx_serving(nginx, Path(served)) as base:
            urls = [f"{base}/{n}.mp4" for n in range(files)]
            for concurrency, workers, slots in ((4, 2, 2), (16, 2, 8)):
                row: dict = {"C": concurrency}
                with DownloadPool(workers, slots_per_worker=slots) as pool:
                    times, _ = timed_runs(
                        lambda d: run_veo3dl(urls, d, workers, slots, pool), runs, None
                    )
                row["veo3dl"] = [total / t for t in times]
                if curl:
                    times, _ = timed_runs(
                        lambda d: run_curl(curl, urls, d, concurrency), runs, None
                    )
                    row["curl"] = [total / t for t in times]
                if aria2c:
                    times, _ = timed_runs(
                        lambda d: run_aria2(aria2c, urls, d, concurrency), runs, None
                    )
                    row["aria2c"] = [total / t for t in times]
                rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--items", type=int, default=400)
    parser.add_argument("--latency-ms", type=float, default=100.0)
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--size-mb", type=int, default=8)
    args = parser.parse_args()
    curl, aria2c, nginx = (
        ensure_tool("curl", "curl"),
        ensure_tool("aria2c", "aria2"),
        ensure_tool("nginx", "nginx-light"),
    )
    for row in latency_bound(args.runs, args.items, args.latency_ms / 1000, curl, aria2c):
        print(
            "latency",
            row["C"],
            {k: f"{summary(v)[0]:.3f}" for k, v in row.items() if isinstance(v, list)},
            f"server CPU {row['server_cpu']:.0%}",
        )
    for row in bandwidth_bound(args.runs, args.files, args.size_mb, curl, aria2c, nginx):
        print(
            "bandwidth",
            row["C"],
            {k: f"{summary(v)[0]:.0f} MB/s" for k, v in row.items() if isinstance(v, list)},
        )


if __name__ == "__main__":
    main()
