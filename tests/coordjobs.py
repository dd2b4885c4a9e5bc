"""Functions the coordination tests run in other processes."""

from __future__ import annotations

import time

from veo3dl._coordination import CoordinatorAddress, CoordinatorLink
from veo3dl._tokens import SessionTokenSource


def _no_fallback() -> SessionTokenSource:
    raise AssertionError("the coordinator should have answered")


def refresh_token(address: CoordinatorAddress, stale: str) -> str:
    """Connect, then ask for a token other than *stale*."""
    link = CoordinatorLink(address, fallback=_no_fallback)
    return link.refresh(stale)


def announce_pause(address: CoordinatorAddress, host: str, seconds: float) -> bool:
    """Announce a pause of *host*."""
    link = CoordinatorLink(address, fallback=_no_fallback)
    link.pause(host, seconds)
    return True


def wait_for_pause(address: CoordinatorAddress, host: str, ready_path: str) -> float:
    """Connect, say so, then poll until a pause of *host* is pushed; return its end."""
    link = CoordinatorLink(address, fallback=_no_fallback)
    link.get()  # a round trip: connected before the test announces anything
    with open(ready_path, "w") as marker:
        marker.write("ready")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        until = link.paused_until(host)
        if until:
            return until
        time.sleep(0.005)
    return 0.0
