"""Run the emulator in a process of its own, so it does not share the GIL
with the code being measured (a real service never does)."""

from __future__ import annotations

import contextlib
import multiprocessing
from collections.abc import Iterator
from multiprocessing.connection import Connection
from typing import Any

import attrs

from veo3dl import Credentials


@attrs.frozen
class RemoteEmulator:
    """Where the emulator listens, and valid credentials for it."""

    labs_url: str
    api_url: str
    files_url: str
    credentials: Credentials
    names: tuple[str, ...]
    fife_urls: tuple[str, ...]


def _serve(conn: Connection, kwargs: dict[str, Any]) -> None:
    from veo3dl.testing import FlowEmulator

    with FlowEmulator(**kwargs) as flow:
        names = tuple(item.name for item in flow.items)
        conn.send(
            RemoteEmulator(
                flow.labs_url,
                flow.api_url,
                flow.files_url,
                flow.credentials,
                names,
                tuple(flow.fife_url(name) for name in names),
            )
        )
        conn.recv()  # until told to stop (or the parent goes away)


@contextlib.contextmanager
def emulator_process(**kwargs: Any) -> Iterator[RemoteEmulator]:
    """A FlowEmulator(**kwargs) in a child process, for the length of the block."""
    parent, child = multiprocessing.Pipe()
    process = multiprocessing.get_context("spawn").Process(
        target=_serve, args=(child, kwargs), daemon=True
    )
    process.start()
    child.close()
    try:
        if not parent.poll(120):
            raise RuntimeError("the emulator process did not start")
        yield parent.recv()
    finally:
        with contextlib.suppress(OSError):
            parent.send("stop")
        process.join(10)
        if process.is_alive():
            process.kill()
            process.join(5)
