"""The ``veo3dl`` command.

Exit codes (sync and download): 0 all done; 1 some items failed (listed),
or were left alone because they failed before; 2 a usage or configuration
error (one line, no traceback); 3 the service refused the credentials (a
stale cookie: log in again).  ``status`` exits 0 whenever it could read the
catalogue.  ``status`` and ``gallery`` open the catalogue read-only.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from pathlib import Path

import click

from veo3dl._cli_reports import (
    counted,
    download_exit_code,
    download_summary,
    open_for_report,
    require_profile,
)
from veo3dl._cli_support import (
    CLICK_CONTEXT,
    ClientOptions,
    cli_errors,
    client_options,
    default_dest,
    open_store,
    print_table,
)
from veo3dl._demo import run_demo
from veo3dl._gallery import write_gallery
from veo3dl._logging import LogConfig, configure_for_cli
from veo3dl._progress import ProgressDisplay, human_bytes
from veo3dl._service import ImageService
from veo3dl._version import __version__
from veo3dl.exceptions import ConfigError
from veo3dl.testing import FlowEmulator

__all__ = ["main"]


class _State:
    def __init__(self, quiet: bool) -> None:
        self.display = ProgressDisplay(quiet=quiet)
        self.quiet = quiet


@click.group(context_settings=CLICK_CONTEXT)
@click.version_option(__version__, prog_name="veo3dl")
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
    default="warning",
    show_default=True,
    envvar="VEO3DL_LOG_LEVEL",
    help="Show log lines at this level and above (on stderr).",
)
@click.option(
    "--log-format",
    type=click.Choice(["console", "json"]),
    default="console",
    show_default=True,
    help="Render log lines for people or as JSON, one object per line.",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
@click.pass_context
def cli(ctx: click.Context, log_level: str, log_format: str, quiet: bool) -> None:
    """Mirror your Google Flow (Imagen / Veo 3) library to disk, with a SQLite catalogue.

    Start with `veo3dl demo`: the whole job on a bundled emulator.
    """
    ctx.obj = _State(quiet)
    ctx.meta["log"] = (log_level, log_format)
    configure_for_cli(log_level, log_format, (), sys.stderr)


_db_option = click.option(
    "--db",
    "db",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="The catalogue (SQLite).",
)
_profile_option = click.option(
    "--profile", required=True, help="The library's name in the catalogue."
)
_dest_option = click.option(
    "--dest",
    type=click.Path(file_okay=False, path_type=Path),
    help="Storage root [default: 'media' beside --db].",
)


def _configure_secrets(ctx: click.Context, options: ClientOptions) -> LogConfig:
    log_level, log_format = ctx.find_root().meta["log"]
    config = LogConfig(log_level, log_format, options.credentials.secrets())
    config.apply()
    return config  # the download's workers apply it too, under any start method


@cli.command()
@_db_option
@click.option("--profile", required=True, help="A name for this account's library, e.g. 'me'.")
@click.option(
    "--incremental",
    is_flag=True,
    help=(
        "Stop at the first page already stored (never marks vanished items); lists "
        "everything when no full sync has completed since one was cut short."
    ),
)
@client_options
@click.pass_context
def sync(
    ctx: click.Context, db: Path, profile: str, incremental: bool, options: ClientOptions
) -> None:
    """List the whole library into the catalogue (every page, every item once)."""
    state: _State = ctx.obj
    with cli_errors():
        _configure_secrets(ctx, options)
        with options.client() as client, open_store(db) as store:
            service = ImageService(client, store)
            state.display.restart()
            report = service.sync_metadata(
                profile, incremental=incremental, on_page=state.display.sync_page
            )
            state.display.sync_done(report.pages, report.seen, report.inserted)
        how = (
            "listing complete"
            if report.complete
            else f"listing stopped early ({report.stop or 'caught up'})"
        )
        click.echo(
            f"synced {report.seen} items for {profile!r}: {report.inserted} new, {report.updated} refreshed, "
            f"{report.marked_missing} gone from Flow, {report.skipped_malformed} malformed skipped ({how})"
        )
        if report.fell_back_to_full:
            click.echo(
                f"note: listed everything instead of only what is new ({report.fallback_reason})",
                err=True,
            )
        if report.loop_guard:
            click.echo(
                f"note: the service looped ({report.stop}); a loop guard ended the listing, "
                "so nothing was marked gone from Flow (sync again to see the rest)",
                err=True,
            )


@cli.command()
@_db_option
@_profile_option
@_dest_option
@click.option(
    "--workers", type=click.IntRange(1, 64), default=2, show_default=True, help="Worker processes."
)
@click.option(
    "--slots",
    type=click.IntRange(1, 64),
    default=8,
    show_default=True,
    help="Downloads at once per worker.",
)
@click.option("--names", multiple=True, help="Only these items (repeat, or separate with commas).")
@click.option("--retry-failed", is_flag=True, help="Also try items that failed before.")
@click.option(
    "--job-timeout",
    type=click.FloatRange(min=1),
    help="Give up on one item after this many seconds.",
)
@client_options
@click.pass_context
def download(
    ctx: click.Context,
    db: Path,
    profile: str,
    dest: Path | None,
    workers: int,
    slots: int,
    names: Sequence[str],
    retry_failed: bool,
    job_timeout: float | None,
    options: ClientOptions,
) -> None:
    """Download every synced item not yet on disk, verified, into date folders.

    Items that failed before are left alone unless --retry-failed (and the
    command then exits 1, saying so).  Items another `veo3dl download` on the
    same catalogue is fetching are left to it and counted as "being
    downloaded by another run": that is not an error (exit 0).
    """
    state: _State = ctx.obj
    wanted = [n.strip() for chunk in names for n in chunk.split(",") if n.strip()] or None
    with cli_errors():
        log_config = _configure_secrets(ctx, options)
        with open_store(db, must_exist=True) as store, options.client() as client:
            require_profile(store, profile, db)
            service = ImageService(
                client,
                store,
                worker_logging=log_config,
                storage_root=dest or default_dest(db),
                workers=workers,
                slots_per_worker=slots,
                job_timeout=job_timeout,
            )
            state.display.restart()
            report = service.download_images(
                profile, wanted, on_progress=state.display.download, retry_failed=retry_failed
            )
            state.display.download_done(report.downloaded, report.selected, report.bytes)
        click.echo(download_summary(report))
        ctx.exit(download_exit_code(report))


@cli.command()
@_db_option
@_profile_option
def status(db: Path, profile: str) -> None:
    """Totals and a per-date breakdown of one library in the catalogue."""
    with cli_errors(), open_for_report(db) as store:
        counts = store.counts(profile)
        click.echo(f"{profile!r} in {db}")
        if not counts.items:
            known = ", ".join(repr(p) for p in store.profiles()) or "none yet"
            click.echo(
                f"note: no items for {profile!r} (profiles in the catalogue: {known})", err=True
            )
        print_table(
            ["items", "downloaded", "pending", "failed", "missing remotely", "on disk"],
            [
                [
                    counts.items,
                    counts.downloaded,
                    counts.pending,
                    counts.failed,
                    counts.missing,
                    human_bytes(counts.bytes),
                ]
            ],
        )
        rows = [
            [d.date, d.items, d.downloaded, human_bytes(d.bytes)] for d in store.by_date(profile)
        ]
        if rows:
            click.echo("")
            print_table(["date (UTC)", "items", "downloaded", "on disk"], rows)


@cli.command()
@click.option(
    "--dir",
    "folder",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("veo3dl-demo"),
    show_default=True,
    help="Folder for the demo's catalogue and files (kept, so a second run skips them).",
)
@click.option(
    "--workers",
    type=click.IntRange(1, 16),
    default=2,
    show_default=True,
    help="Worker processes.",
)
@click.option(
    "--slots",
    type=click.IntRange(1, 32),
    default=4,
    show_default=True,
    help="Downloads at once per worker.",
)
@click.pass_context
def demo(ctx: click.Context, folder: Path, workers: int, slots: int) -> None:
    """Sync and download a 42-item library from the bundled emulator, faults included."""
    state: _State = ctx.obj
    with cli_errors():
        code = run_demo(
            folder,
            workers=workers,
            slots=slots,
            display=state.display,
            out=sys.stdout,
            log=ctx.find_root().meta["log"],
        )
    ctx.exit(code)


@cli.command()
@click.option(
    "--port",
    type=click.IntRange(0, 65533),
    default=0,
    help="labs on PORT, api on PORT+1, files on PORT+2 [default: free ports].",
)
@click.option(
    "--images", type=click.IntRange(0), default=36, show_default=True, help="How many images."
)
@click.option(
    "--videos", type=click.IntRange(0), default=6, show_default=True, help="How many videos."
)
@click.option(
    "--latency-ms",
    type=click.FloatRange(0),
    default=0.0,
    show_default=True,
    help="Delay every answer.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Which deterministic library.")
@click.option(
    "--token-calls", type=click.IntRange(1), help="Bearer tokens die after this many media calls."
)
def emulator(
    port: int, images: int, videos: int, latency_ms: float, seed: int, token_calls: int | None
) -> None:
    """Serve the Flow emulator in the foreground, for trying the other commands."""
    with cli_errors():
        flow = FlowEmulator(
            items=images + videos,
            videos=videos,
            seed=seed,
            latency=latency_ms / 1000,
            token_calls=token_calls,
            port=port,
        )
        try:
            flow.start()
        except OSError as error:
            ports = f"ports {port}-{port + 2}" if port else "free ports"
            raise ConfigError(
                f"cannot serve the emulator on 127.0.0.1 {ports}: {error.strerror or error}",
                hint="pick another --port (it takes three in a row), or leave it out for free ports",
            ) from None
    try:  # started above, inside cli_errors(): a port in use is one line, exit 2
        creds = flow.credentials
        click.echo("# The Flow emulator is running; point veo3dl at it with:")
        for name, value in (
            ("VEO3DL_LABS_URL", flow.labs_url),
            ("VEO3DL_API_URL", flow.api_url),
            ("VEO3DL_COOKIE", creds.cookie),
            ("VEO3DL_API_KEY", creds.api_key),
        ):
            click.echo(f"export {name}='{value}'")
        click.echo(f"# {images} images, {videos} videos; Ctrl-C to stop.", err=True)
        sys.stdout.flush()
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            click.echo("\nstopped", err=True)
    finally:
        flow.stop()


@cli.command()
@_db_option
@_profile_option
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="The HTML file to write.",
)
@_dest_option
def gallery(db: Path, profile: str, out: Path, dest: Path | None) -> None:
    """Write a static HTML gallery of the downloaded items (opens from disk, no network)."""
    with cli_errors(), open_for_report(db) as store:
        require_profile(store, profile, db)
        items = store.items(profile)
        root = dest or default_dest(db)
        # Where the files may be when --dest is wrong: the default root, or
        # --dest taken relative to the catalogue rather than the working folder.
        others = [default_dest(db)] + (
            [db.parent / dest] if dest and not dest.is_absolute() else []
        )
        count = write_gallery(items, root, out, title=f"veo3dl: {profile}", other_roots=others)
        click.echo(f"wrote {out} with {counted(count, 'item')}")
        recorded = sum(1 for item in items if item.local_path)
        if count < recorded:
            click.echo(
                f"note: {recorded - count} of {recorded} downloaded files are not under {root} "
                "and are left out",
                err=True,
            )


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``veo3dl`` command."""
    cli.main(args=list(argv) if argv is not None else None, prog_name="veo3dl")
