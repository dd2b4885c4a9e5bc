"""The veo3dl command: every subcommand end to end, exit codes, and no secret in any output."""

from __future__ import annotations

import html.parser
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote

import pytest
import structlog
from click.testing import CliRunner

from veo3dl import ImageStore
from veo3dl._cli import cli
from veo3dl.testing import Fault, FlowEmulator

pytestmark = [pytest.mark.timeout(120), pytest.mark.usefixtures("no_leftover_processes")]

TOKEN_SHAPE = re.compile(r"ya29\.[A-Za-z0-9_-]{8,}")
SIGNATURE_VALUE = re.compile(r"Signature=(?!\[REDACTED\])[A-Za-z0-9%]{8,}")


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """The command configures structlog and the root logger; undo it after each test."""
    import logging

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    structlog.reset_defaults()
    root.handlers, root.level = handlers, level


@pytest.fixture
def flow() -> Iterator[FlowEmulator]:
    with FlowEmulator() as emulator:
        yield emulator


def env_for(flow: FlowEmulator, **extra: str) -> dict[str, str]:
    creds = flow.credentials
    return {
        "VEO3DL_LABS_URL": flow.labs_url,
        "VEO3DL_API_URL": flow.api_url,
        "VEO3DL_COOKIE": creds.cookie or "",
        "VEO3DL_API_KEY": creds.api_key or "",
        **extra,
    }


def run(args: list[str], env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, args, env=env, catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def assert_no_secret(text: str, flow: FlowEmulator) -> None:
    for secret in flow.credentials.secrets():
        assert secret not in text
    assert not TOKEN_SHAPE.search(text), TOKEN_SHAPE.search(text)
    assert not SIGNATURE_VALUE.search(text), SIGNATURE_VALUE.search(text)


def test_sync_download_status_gallery(flow: FlowEmulator, tmp_path: Path) -> None:
    db = tmp_path / "cat.db"
    env = env_for(flow)
    code, out, err = run(["sync", "--db", str(db), "--profile", "me"], env)
    assert code == 0, err
    assert "synced 42 items" in out and "42 new" in out
    code, out, err = run(
        ["download", "--db", str(db), "--profile", "me", "--workers", "1", "--slots", "4"], env
    )
    assert code == 0, err
    assert "downloaded 42 items" in out
    assert "42/42" in err  # the progress line (plain: not a terminal)
    with ImageStore(db) as store:
        assert store.counts("me").downloaded == 42
        assert (tmp_path / "media" / store.items("me")[0].local_path).is_file()
    code, out, _ = run(["status", "--db", str(db), "--profile", "me"])
    assert code == 0
    assert re.search(r"\b42\s+42\s+0\s+0\s+0\b", out)
    for item in flow.items[:3]:
        assert item.create_time.strftime("%Y-%m-%d") in out
    page = tmp_path / "out" / "gallery.html"
    code, out, _ = run(["gallery", "--db", str(db), "--profile", "me", "--out", str(page)])
    assert code == 0 and "42 items" in out
    links = LinkCollector.collect(page.read_text())
    assert len(links) == 2 * 42  # one link and one thumbnail per item
    for link in links:
        assert not link.startswith(("http:", "https:", "/")), link
        assert (page.parent / unquote(link)).resolve().is_file(), link


class LinkCollector(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("href", "src") and value:
                self.links.append(value)

    @classmethod
    def collect(cls, text: str) -> list[str]:
        parser = cls()
        parser.feed(text)
        return parser.links


def test_gallery_escapes_prompts(flow: FlowEmulator, tmp_path: Path) -> None:
    db = tmp_path / "cat.db"
    env = env_for(flow)
    assert run(["sync", "--db", str(db), "--profile", "me"], env)[0] == 0
    assert (
        run(["download", "--db", str(db), "--profile", "me", "--names", flow.items[0].name], env)[0]
        == 0
    )
    with ImageStore(db) as store:
        store.db.execute(
            "UPDATE veo3_image_generations SET prompt = ?", ["<script>alert(1)</script>"]
        )
    page = tmp_path / "g.html"
    assert run(["gallery", "--db", str(db), "--profile", "me", "--out", str(page)])[0] == 0
    assert "<script>" not in page.read_text() and "&lt;script&gt;" in page.read_text()


def test_some_items_failed_exit_1_and_listed(flow: FlowEmulator, tmp_path: Path) -> None:
    db = tmp_path / "cat.db"
    env = env_for(flow)
    broken = flow.items[0].name
    flow.inject(Fault.status(404), endpoint="media", name=broken, times=None)
    flow.inject(Fault.status(404), endpoint="fife", name=broken, times=None)
    assert run(["sync", "--db", str(db), "--profile", "me"], env)[0] == 0
    code, out, err = run(["download", "--db", str(db), "--profile", "me"], env)
    assert code == 1
    assert f"FAILED {broken}: NotFoundError" in err and "41 items" in out
    code, out, err = run(["download", "--db", str(db), "--profile", "me"], env)
    assert code == 0 and "1 failed before (use --retry-failed)" in out
    assert run(["download", "--db", str(db), "--profile", "me", "--retry-failed"], env)[0] == 1


def test_stale_cookie_is_exit_3_with_the_way_out(flow: FlowEmulator, tmp_path: Path) -> None:
    flow.stale_cookie = True
    code, _, err = run(["sync", "--db", str(tmp_path / "c.db"), "--profile", "me"], env_for(flow))
    assert code == 3
    assert "log in again" in err and "Traceback" not in err
    assert err.count("\n") == 1  # one line


@pytest.mark.parametrize(
    ("args", "env_extra", "message"),
    [
        (["sync", "--db", "{db}", "--profile", "me"], {"VEO3DL_COOKIE": ""}, "VEO3DL_COOKIE"),
        (
            ["sync", "--db", "{db}", "--profile", "me"],
            {"VEO3DL_LABS_URL": "labs.google/fx"},
            "labs_url",
        ),
        (["download", "--db", "{db}", "--profile", "me"], {"VEO3DL_API_KEY": ""}, "VEO3DL_API_KEY"),
        (["status", "--db", "{missing}", "--profile", "me"], {}, "no catalogue"),
        (["status", "--db", "{corrupt}", "--profile", "me"], {}, "not a SQLite database"),
        (["download", "--db", "{db}", "--profile", "me", "--workers", "0"], {}, "workers"),
    ],
)
def test_usage_and_configuration_errors_are_exit_2(
    flow: FlowEmulator,
    tmp_path: Path,
    args: list[str],
    env_extra: dict[str, str],
    message: str | None,
) -> None:
    corrupt = tmp_path / "corrupt.db"
    corrupt.write_bytes(b"not sqlite at all" * 100)
    db = tmp_path / "c.db"
    if "download" in args:
        assert run(["sync", "--db", str(db), "--profile", "me"], env_for(flow))[0] == 0
    values = {"db": str(db), "missing": str(tmp_path / "none.db"), "corrupt": str(corrupt)}
    code, _, err = run([a.format(**values) for a in args], env_for(flow, **env_extra))
    assert code == 2, err
    assert "Traceback" not in err
    if message:
        assert message in err


def test_python_dash_m_and_version() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "veo3dl", "--version"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0 and "veo3dl" in result.stdout
    result = subprocess.run(
        [sys.executable, "-m", "veo3dl", "--help"], capture_output=True, text=True, timeout=60
    )
    for command in ("sync", "download", "status", "demo", "emulator", "gallery"):
        assert command in result.stdout


def test_demo_twice(tmp_path: Path) -> None:
    code, out, err = run(["demo", "--dir", str(tmp_path / "demo")])
    assert code == 0, out + err
    assert "downloaded  42 items" in out
    assert "503 from the API" in out and "429" in out and "renewed" in out
    assert "42 of 42 items recorded" in out
    code, out, _ = run(["demo", "--dir", str(tmp_path / "demo")])
    assert code == 0
    assert "downloaded  0 items" in out and "42 already there" in out


def test_separate_emulator_and_debug_logs_without_secrets(tmp_path: Path) -> None:
    """`veo3dl emulator` in the foreground; the other commands reach it through the environment."""
    emulator = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "veo3dl",
            "emulator",
            "--images",
            "20",
            "--videos",
            "2",
            "--token-calls",
            "7",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        env = dict(os.environ)
        secrets = []
        assert emulator.stdout is not None
        while len(secrets) < 4:
            line = emulator.stdout.readline()
            assert line, "the emulator did not start"
            if line.startswith("export "):
                name, _, value = line[len("export ") :].strip().partition("=")
                env[name] = value.strip("'")
                secrets.append(env[name])
        db = str(tmp_path / "cat.db")
        outputs = []
        for args in (
            ["sync", "--db", db, "--profile", "me"],
            ["download", "--db", db, "--profile", "me", "--workers", "2", "--slots", "2"],
            ["status", "--db", db, "--profile", "me"],
        ):
            result = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "veo3dl",
                    "--log-level",
                    "debug",
                    "--log-format",
                    "json",
                    *args,
                ],
                env=env,
                capture_output=True,
                text=True,
                timeout=90,
            )
            assert result.returncode == 0, result.stderr[-2000:]
            outputs.append(result.stdout + result.stderr)
        everything = "\n".join(outputs)
        assert "synced 22 items" in everything and "downloaded 22 items" in everything
        assert '"event"' in everything and "urllib3" in everything  # debug lines really were there
        for secret in secrets[2:]:  # the cookie and the key
            assert secret not in everything
        assert not TOKEN_SHAPE.search(everything)
        assert not SIGNATURE_VALUE.search(everything)
    finally:
        emulator.terminate()
        emulator.wait(10)
        if emulator.stdout:
            emulator.stdout.close()


def test_download_with_a_stale_cookie_is_exit_3(flow: FlowEmulator, tmp_path: Path) -> None:
    db = tmp_path / "cat.db"
    env = env_for(flow)
    env["VEO3DL_BEARER_TOKEN"] = ""
    assert run(["sync", "--db", str(db), "--profile", "me"], env)[0] == 0
    flow.stale_cookie = True
    code, out, err = run(["download", "--db", str(db), "--profile", "me"], env)
    assert code == 3, err
    assert "log in again" in err and "Traceback" not in err
    without_url = [i for i in flow.items if not i.fife_in_listing]
    assert f"{len(without_url)} items need a fresh login" in err
    assert (
        f"downloaded {len(flow.items) - len(without_url)} items" in out
    )  # the rest came through signed URLs


def test_failed_lines_name_the_item_once(flow: FlowEmulator, tmp_path: Path) -> None:
    db = tmp_path / "cat.db"
    env = env_for(flow)
    broken = flow.items[0].name
    flow.inject(Fault.status(404), endpoint="media", name=broken, times=None)
    flow.inject(Fault.status(404), endpoint="fife", name=broken, times=None)
    assert run(["sync", "--db", str(db), "--profile", "me"], env)[0] == 0
    _, _, err = run(["download", "--db", str(db), "--profile", "me"], env)
    [line] = [line for line in err.splitlines() if line.startswith("FAILED")]
    assert line.count(broken) == 1
