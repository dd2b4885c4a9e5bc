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

    root, urllib3 = logging.getLogger(), logging.getLogger("urllib3")
    handlers, level, urllib3_level = list(root.handlers), root.level, urllib3.level
    yield
    structlog.reset_defaults()
    root.handlers, root.level = handlers, level
    urllib3.setLevel(urllib3_level)


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
    # Not downloaded, and not tried: not a success either.
    assert code == 1 and "1 failed before (use --retry-failed)" in out
    assert "1 item failed in an earlier run and was not tried again" in err
    assert "--retry-failed" in err and "FAILED" not in err
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
    assert "(s)" not in out and not re.search(r"(?<![\d.])1 items\b", out)
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


# ------------------------------------------------- review findings: exit codes and messages


def synced_and_downloaded(flow: FlowEmulator, tmp_path: Path, *names: str) -> Path:
    db = tmp_path / "cat.db"
    env = env_for(flow)
    assert run(["sync", "--db", str(db), "--profile", "me"], env)[0] == 0
    only = ["--names", ",".join(names)] if names else []
    code, _, err = run(
        ["download", "--db", str(db), "--profile", "me", "--workers", "1", *only], env
    )
    assert code == 0, err
    return db


def test_emulator_on_a_port_in_use_is_one_line_exit_2() -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        if port > 65533:
            pytest.skip("the kernel handed out a port too high for --port")
        code, out, err = run(["emulator", "--port", str(port)])
    assert code == 2, err
    assert "Traceback" not in err and err.count("\n") == 1
    assert f"ports {port}-{port + 2}" in err and "--port" in err and "in use" in err
    assert "export" not in out


def test_download_without_a_catalogue_is_exit_2_and_creates_nothing(
    flow: FlowEmulator, tmp_path: Path
) -> None:
    db = tmp_path / "none.db"
    code, _, err = run(["download", "--db", str(db), "--profile", "me"], env_for(flow))
    assert code == 2, err
    assert "no catalogue at" in err and "veo3dl sync" in err and err.count("\n") == 1
    assert not db.exists() and list(tmp_path.iterdir()) == []


def test_download_of_an_unknown_profile_is_exit_2(flow: FlowEmulator, tmp_path: Path) -> None:
    db = tmp_path / "cat.db"
    env = env_for(flow)
    assert run(["sync", "--db", str(db), "--profile", "me"], env)[0] == 0
    code, out, err = run(["download", "--db", str(db), "--profile", "you"], env)
    assert code == 2, err
    assert "no items for profile 'you'" in err and "it holds 'me'" in err
    assert "veo3dl sync" in err and "--profile you" in err and err.count("\n") == 1
    assert "downloaded" not in out
    assert not (tmp_path / "media").exists()


def test_items_another_run_is_downloading_are_counted_and_exit_0(
    flow: FlowEmulator, tmp_path: Path
) -> None:
    import time

    db = tmp_path / "cat.db"
    env = env_for(flow)
    assert run(["sync", "--db", str(db), "--profile", "me"], env)[0] == 0
    held = [item.name for item in flow.items[:2]]
    with ImageStore(db) as store:  # as another machine's run would hold them
        store.db.conn.executemany(
            "UPDATE veo3_image_generations SET claimed_by = ?, claim_expires = ? WHERE name = ?",
            [("elsewhere:1:-:0123abcd", time.time() + 600, name) for name in held],
        )
        store.db.conn.commit()
    code, out, err = run(["download", "--db", str(db), "--profile", "me", "--workers", "1"], env)
    assert code == 0, err
    assert "downloaded 40 items" in out and "2 being downloaded by another run" in out
    code, out, _ = run(["download", "--db", str(db), "--profile", "me", "--help"])
    assert "another run" in " ".join(out.split())


def test_a_wrong_api_key_is_a_configuration_error(flow: FlowEmulator, tmp_path: Path) -> None:
    db = tmp_path / "cat.db"
    env = env_for(flow)
    assert run(["sync", "--db", str(db), "--profile", "me"], env)[0] == 0
    wrong = env_for(flow, VEO3DL_API_KEY="AIza" + "x" * 35)
    code, out, err = run(["download", "--db", str(db), "--profile", "me", "--workers", "1"], wrong)
    assert code == 2, err
    assert "VEO3DL_API_KEY" in err and "refused the API key" in err
    assert "FAILED" not in err  # one line for the cause, not one per item
    assert [line for line in err.splitlines() if line.startswith("veo3dl:")] == [
        line for line in err.splitlines() if "VEO3DL_API_KEY" in line
    ]
    without_url = [i for i in flow.items if not i.fife_in_listing]
    assert f"({len(without_url)} items not downloaded)" in err
    assert (
        f"downloaded {len(flow.items) - len(without_url)} items" in out
    )  # signed URLs need no key
    # Fixed, the items left behind come with --retry-failed.
    code, out, err = run(["download", "--db", str(db), "--profile", "me", "--retry-failed"], env)
    assert code == 0, err
    assert f"downloaded {len(without_url)} items" in out


def test_one_item_needs_a_fresh_login_singular(flow: FlowEmulator, tmp_path: Path) -> None:
    db = tmp_path / "cat.db"
    env = env_for(flow, VEO3DL_BEARER_TOKEN="")
    assert run(["sync", "--db", str(db), "--profile", "me"], env)[0] == 0
    flow.stale_cookie = True
    [first, *_] = [i.name for i in flow.items if not i.fife_in_listing]
    code, out, err = run(["download", "--db", str(db), "--profile", "me", "--names", first], env)
    assert code == 3, err
    assert "1 item needs a fresh login" in err and "downloaded 0 items" in out


def test_reporting_commands_never_change_the_catalogue(flow: FlowEmulator, tmp_path: Path) -> None:
    db = synced_and_downloaded(flow, tmp_path, flow.items[0].name)
    with ImageStore(db) as store:
        store.db.execute("PRAGMA journal_mode = DELETE")  # as a copy, or an older tool, leaves it
    content = db.read_bytes()
    assert run(["status", "--db", str(db), "--profile", "me"])[0] == 0
    assert (
        run(["gallery", "--db", str(db), "--profile", "me", "--out", str(tmp_path / "g.html")])[0]
        == 0
    )
    assert db.read_bytes() == content
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cat.db", "g.html", "media"]


def test_status_and_gallery_of_a_seed_database_report_without_upgrading_it(
    tmp_path: Path,
) -> None:
    from test_store import build_seed_database

    db = tmp_path / "seed.db"
    build_seed_database(db)
    content = db.read_bytes()
    code, out, err = run(["status", "--db", str(db), "--profile", "default"])
    assert code == 0, err
    assert re.search(r"\b18\s+6\s+12\s+0\s+0\b", out), out  # duplicates merged, as sync will
    assert "older format" in err and "veo3dl sync" in err and "not changed" in err
    page = tmp_path / "g.html"
    code, _, err = run(["gallery", "--db", str(db), "--profile", "default", "--out", str(page)])
    assert code == 2  # the seed's absolute paths point at files that are not on this machine
    assert "/home/u/Pictures/flow" in err and not page.exists()
    assert db.read_bytes() == content


@pytest.mark.parametrize("command", ["status", "gallery", "sync"])
def test_another_programs_database_is_refused_and_untouched(
    flow: FlowEmulator, tmp_path: Path, command: str
) -> None:
    from test_store import build_foreign_database

    db = tmp_path / "app.db"
    content = build_foreign_database(db)
    args = [command, "--db", str(db), "--profile", "me"]
    if command == "gallery":
        args += ["--out", str(tmp_path / "g.html")]
    code, _, err = run(args, env_for(flow))
    assert code == 2, err
    assert "not a veo3dl catalogue" in err and "notes" in err and str(db) in err
    assert "Traceback" not in err and err.count("\n") == 1
    assert db.read_bytes() == content
    assert sorted(p.name for p in tmp_path.iterdir()) == ["app.db"]


def test_status_of_an_empty_database_says_to_sync_first(tmp_path: Path) -> None:
    db = tmp_path / "empty.db"
    db.write_bytes(b"")
    code, _, err = run(["status", "--db", str(db), "--profile", "me"])
    assert code == 2 and "no catalogue in it yet" in err and "veo3dl sync" in err
    assert db.read_bytes() == b""


def test_gallery_with_a_wrong_dest_is_exit_2_naming_the_right_one(
    flow: FlowEmulator, tmp_path: Path
) -> None:
    db = synced_and_downloaded(flow, tmp_path, flow.items[0].name, flow.items[1].name)
    page = tmp_path / "g.html"
    wrong = tmp_path / "elsewhere"
    code, out, err = run(
        ["gallery", "--db", str(db), "--profile", "me", "--out", str(page), "--dest", str(wrong)]
    )
    assert code == 2, err
    assert str(wrong) in err and f"--dest {tmp_path / 'media'}" in err and err.count("\n") == 1
    assert not page.exists() and "wrote" not in out
    # Some files gone: the page shows the others, and says so.
    first = next((tmp_path / "media").rglob("*.*"))
    first.rename(tmp_path / first.name)
    code, out, err = run(["gallery", "--db", str(db), "--profile", "me", "--out", str(page)])
    assert code == 0 and "with 1 item" in out
    assert "1 of 2 downloaded files are not under" in err
    page.unlink()
    # Nowhere to be found: say what to pass.
    (tmp_path / "media").rename(tmp_path / "moved")
    code, _, err = run(["gallery", "--db", str(db), "--profile", "me", "--out", str(page)])
    assert code == 2 and "pass --dest the folder" in err and not page.exists()


def test_gallery_of_an_unknown_profile_is_exit_2(flow: FlowEmulator, tmp_path: Path) -> None:
    db = synced_and_downloaded(flow, tmp_path, flow.items[0].name)
    page = tmp_path / "g.html"
    code, _, err = run(["gallery", "--db", str(db), "--profile", "you", "--out", str(page)])
    assert code == 2 and "no items for profile 'you'" in err and not page.exists()


def test_demo_options_are_documented() -> None:
    code, out, _ = run(["demo", "--help"])
    assert code == 0
    text = " ".join(out.split())
    assert "Folder for the demo" in text
    assert "Worker processes." in text and "Downloads at once per worker." in text


def test_demo_summary_counts_in_words() -> None:
    from veo3dl._cli_reports import counted
    from veo3dl._demo import _times

    assert (counted(1, "item"), counted(0, "item"), counted(2, "item")) == (
        "1 item",
        "0 items",
        "2 items",
    )
    assert (_times(1), _times(2), _times(5)) == ("once", "twice", "5 times")


def test_incremental_sync_says_when_it_lists_everything(flow: FlowEmulator, tmp_path: Path) -> None:
    db, env = tmp_path / "cat.db", env_for(flow)
    code, out, err = run(["sync", "--db", str(db), "--profile", "me", "--incremental"], env)
    assert code == 0 and "synced 42 items" in out
    assert "listed everything" in err and "no full sync has completed" in err
    flow.add_items(2)
    code, out, err = run(["sync", "--db", str(db), "--profile", "me", "--incremental"], env)
    assert code == 0 and "2 new" in out and "listed everything" not in err


@pytest.mark.parametrize(
    ("option", "value"),
    [("--api-key", "AIza bad key"), ("--cookie", "session=caf\u00e9"), ("--bearer-token", "a\nb")],
)
def test_a_credential_a_header_cannot_carry_is_exit_2(
    tmp_path: Path, option: str, value: str
) -> None:
    code, _, err = run(["sync", "--db", str(tmp_path / "c.db"), "--profile", "me", option, value])
    assert code == 2, err
    assert err.startswith("veo3dl: ") and len(err.strip().splitlines()) == 1
    assert "VEO3DL_" in err and value not in err and "Traceback" not in err
