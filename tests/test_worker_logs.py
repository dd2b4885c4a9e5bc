"""Worker processes log like the command (or application) that asked them to, never a secret.

Under forkserver and spawn a worker starts with no logging configured; the
command hands its :class:`~veo3dl._logging.LogConfig` to the pool as the
workers' initializer.  Worker lines carry ``pid``, which the parent's lines
never do, so the tests can tell them apart.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
from conftest import START_METHODS

from veo3dl import Credentials, DownloadPool, FlowClient, ImageService, ImageStore
from veo3dl._logging import LogConfig, SecretFilter
from veo3dl.exceptions import ConfigError
from veo3dl.testing import Fault, FlowEmulator

pytestmark = [pytest.mark.timeout(120), pytest.mark.usefixtures("no_leftover_processes")]

TOKEN_SHAPE = re.compile(r"ya29\.[A-Za-z0-9_-]{8,}")
MEDIA_LINE = re.compile(r"/v1/media/\S*key=\[REDACTED\]")
WORKER_PID = re.compile(r"\bpid=(\d+)")

# The application in a process of its own: LogConfig is global logging setup.
LIBRARY_RUN = """
import os, sys
from veo3dl import Credentials, DownloadPool, FlowClient, ImageService, ImageStore
from veo3dl._logging import LogConfig

db, root, method, asked = sys.argv[1:5]
credentials = Credentials(cookie=os.environ["VEO3DL_COOKIE"], api_key=os.environ["VEO3DL_API_KEY"])
config = LogConfig("debug", "console", credentials.secrets())
config.apply()
pool = DownloadPool(2, slots_per_worker=2, start_method=method,
                    initializer=config if asked == "yes" else None)
with FlowClient(credentials, labs_url=os.environ["VEO3DL_LABS_URL"],
                api_url=os.environ["VEO3DL_API_URL"]) as client, ImageStore(db) as store, pool:
    report = ImageService(client, store, pool, root).download_images("me")
print("downloaded", report.downloaded, flush=True)
"""


@pytest.fixture
def flow() -> Iterator[FlowEmulator]:
    with FlowEmulator(items=5, videos=1) as emulator:
        yield emulator


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """LogConfig.apply configures this process's logging; undo it after the test."""
    root, urllib3 = logging.getLogger(), logging.getLogger("urllib3")
    saved = (list(root.handlers), root.level, urllib3.level, list(urllib3.filters))
    yield
    structlog.reset_defaults()
    root.handlers, root.level = saved[0], saved[1]
    urllib3.setLevel(saved[2])
    urllib3.filters = saved[3]


def env_for(flow: FlowEmulator, **extra: str) -> dict[str, str]:
    creds = flow.credentials
    env = {k: v for k, v in os.environ.items() if not k.startswith("VEO3DL_")}
    return {
        **env,
        "VEO3DL_LABS_URL": flow.labs_url,
        "VEO3DL_API_URL": flow.api_url,
        "VEO3DL_COOKIE": creds.cookie or "",
        "VEO3DL_API_KEY": creds.api_key or "",
        **extra,
    }


def synced(flow: FlowEmulator, tmp_path: Path) -> Path:
    db = tmp_path / "cat.db"
    with (
        FlowClient(flow.credentials, labs_url=flow.labs_url, api_url=flow.api_url) as client,
        ImageStore(db) as store,
    ):
        ImageService(client, store).sync_metadata("me")
    return db


def run(args: list[str], env: dict[str, str]) -> tuple[int, int, str, str]:
    """Run *args* under Python; return its pid, exit code, stdout and stderr."""
    process = subprocess.Popen(
        [sys.executable, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        out, err = process.communicate(timeout=90)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    return process.pid, process.returncode, out, err


def assert_no_secret(text: str, flow: FlowEmulator) -> None:
    for secret in flow.credentials.secrets():
        assert secret not in text
    assert not TOKEN_SHAPE.search(text), TOKEN_SHAPE.search(text)


def worker_lines(err: str, parent: int) -> list[str]:
    """Console lines tagged with a pid other than the parent's (which never tags its own)."""
    lines = []
    for line in err.splitlines():
        found = WORKER_PID.search(line)
        if found:
            assert int(found.group(1)) != parent, line
            lines.append(line)
    return lines


@pytest.mark.parametrize("fmt", ["console", "json"])
def test_command_debug_log_shows_worker_lines_redacted(
    flow: FlowEmulator, tmp_path: Path, fmt: str
) -> None:
    """`veo3dl --log-level debug download`: the workers' requests and retries, scrubbed.

    The command takes the pool's default start method (forkserver here);
    the library test below covers the others.
    """
    db = synced(flow, tmp_path)
    flow.inject(Fault.status(503), endpoint="media", name=flow.items[0].name, times=1)
    args = ["-m", "veo3dl", "--log-level", "debug", "--log-format", fmt]
    args += ["download", "--db", str(db), "--profile", "me", "--workers", "2", "--slots", "2"]
    pid, code, out, err = run(args, env_for(flow))
    assert code == 0, err[-3000:]
    assert "downloaded 5 item" in out
    assert_no_secret(out + err, flow)
    if fmt == "json":
        events = []
        for line in err.splitlines():
            try:
                events.append(json.loads(line))
            except ValueError:
                continue  # the progress lines
        workers = [e for e in events if "pid" in e]
        assert workers and all(e["pid"] != pid for e in workers)
        assert any(MEDIA_LINE.search(e["event"]) for e in workers), workers[:5]
        retries = [e for e in workers if e["event"] == "request_retry"]
        assert retries and MEDIA_LINE.search(retries[0]["url"]), retries
    else:
        workers = worker_lines(err, pid)
        assert any(MEDIA_LINE.search(line) for line in workers), err[-3000:]
        assert any("request_retry" in line and MEDIA_LINE.search(line) for line in workers)


@pytest.mark.parametrize("start_method", START_METHODS)
def test_library_workers_log_like_the_parent(
    flow: FlowEmulator, tmp_path: Path, start_method: str
) -> None:
    """A pool with ``initializer=LogConfig(...)``, under every start method."""
    db = synced(flow, tmp_path)
    args = ["-c", LIBRARY_RUN, str(db), str(tmp_path / "media"), start_method, "yes"]
    pid, code, out, err = run(args, env_for(flow))
    assert code == 0, err[-3000:]
    assert "downloaded 5" in out
    assert_no_secret(out + err, flow)
    assert any(MEDIA_LINE.search(line) for line in worker_lines(err, pid)), err[-3000:]


def test_library_workers_left_alone_unless_asked(flow: FlowEmulator, tmp_path: Path) -> None:
    """Without the initializer, a spawned worker configures no logging of its own."""
    db = synced(flow, tmp_path)
    args = ["-c", LIBRARY_RUN, str(db), str(tmp_path / "media"), "spawn", "no"]
    _, code, out, err = run(args, env_for(flow))
    assert code == 0, err[-3000:]
    assert "downloaded 5" in out
    assert "/v1/media/" not in err and "pid=" not in err
    assert "download_finished" in err  # the parent's own logging did work


@pytest.mark.parametrize("level", ["warning", "debug"])
def test_urllib3_retry_warnings_only_at_debug(
    flow: FlowEmulator, tmp_path: Path, level: str
) -> None:
    """Connection refused on the api host: urllib3 warns per retry; the command hides that."""
    db = synced(flow, tmp_path)
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"
    item = next(i for i in flow.items if i.fife_in_listing)
    args = ["-m", "veo3dl", "--log-level", level, "download", "--db", str(db)]
    args += ["--profile", "me", "--names", item.name]
    _, code, out, err = run(args, env_for(flow, VEO3DL_API_URL=closed))
    assert code == 0, err[-3000:]  # the signed URL served it
    assert "downloaded 1 item" in out  # "item" or "items"
    assert_no_secret(out + err, flow)
    if level == "debug":
        assert "Retrying (Retry(" in err and MEDIA_LINE.search(err)
    else:
        assert "Retrying" not in err and "urllib3" not in err


def test_log_config_is_a_small_safe_value() -> None:
    config = LogConfig("DEBUG", "json", ("hunter2-secret", ""))
    assert config.level == "debug" and config.secrets == ("hunter2-secret",)
    assert "hunter2" not in repr(config)
    assert pickle.loads(pickle.dumps(config)) == config
    with pytest.raises(ConfigError):
        LogConfig("verbose")
    with pytest.raises(ConfigError):
        LogConfig("info", "xml")
    with pytest.raises(ConfigError):
        LogConfig("info", stream="stdlog")


@pytest.mark.usefixtures("restore_logging")
def test_apply_sets_urllib3_level_and_filter() -> None:
    LogConfig("warning", secrets=("hunter2-secret",)).apply()
    assert logging.getLogger("urllib3").level == logging.ERROR
    filters = logging.getLogger("urllib3.connectionpool").filters
    assert any(isinstance(f, SecretFilter) and f.secrets == ("hunter2-secret",) for f in filters)
    LogConfig("debug").apply()
    assert logging.getLogger("urllib3").getEffectiveLevel() == logging.DEBUG


def test_service_refuses_worker_logging_for_a_given_pool(tmp_path: Path) -> None:
    with (
        DownloadPool(1, start_method=START_METHODS[-1]) as pool,
        ImageStore(tmp_path / "c.db") as store,
        FlowClient(Credentials()) as client,
    ):
        with pytest.raises(ConfigError, match="worker_logging"):
            ImageService(client, store, pool, worker_logging=LogConfig())
        with pytest.raises(ConfigError, match="LogConfig"):
            ImageService(client, store, worker_logging="debug")  # type: ignore[arg-type]
