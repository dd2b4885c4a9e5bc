"""An emulator of Google Flow's media service, for tests.

:class:`FlowEmulator` is a real HTTP/1.1 server on loopback that speaks the
protocol veo3dl uses (session, paginated listing, media by name, signed file
URLs), with the service's quirks, and faults on demand.  Its library is
generated from a seed, so tests can assert on exact items and exact bytes.

Use it in your own tests::

    from veo3dl.testing import Fault, FlowEmulator

    def test_my_sync(tmp_path):
        with FlowEmulator(items=42, videos=6, seed=1) as flow:
            flow.inject(Fault.rate_limited(retry_after=1), endpoint="media", times=2)
            flow.inject(Fault.truncate(), endpoint="fife", name=flow.items[0].name)

            run_my_sync(
                labs_url=flow.labs_url,      # session + listing
                api_url=flow.api_url,        # media by name
                credentials=flow.credentials,
                dest=tmp_path,
            )

            for item in flow.items:
                saved = tmp_path / f"{item.name}.{item.extension}"
                assert saved.read_bytes() == flow.content(item.name)
            assert flow.requests("listing") == 3     # 18 + 18 + 6 items

The signed file URLs the service hands out point at :attr:`FlowEmulator.files_url`.
Faults are built with :class:`Fault` (``status``, ``rate_limited``, ``truncate``,
``reset``, ``drip``, ``html``, ``json_200``, ``short_length``, ``expired_fife``,
``repeat_items``, ``loop_token``, ``latency``) and withdrawn through the
:class:`FaultHandle` that :meth:`FlowEmulator.inject` returns.
:meth:`FlowEmulator.hold` keeps chosen requests unanswered until released
(a :class:`RequestHold`), so a test can act at an exact point of a client's
run - kill it while page 2 is in flight, say.
"""

from veo3dl.testing._emulator import DEFAULT_BASE_TIME, FlowEmulator
from veo3dl.testing._faults import Fault, FaultHandle, FaultKind
from veo3dl.testing._library import EmulatedItem
from veo3dl.testing._media import MediaBlob
from veo3dl.testing._state import RequestHold

__all__ = [
    "DEFAULT_BASE_TIME",
    "EmulatedItem",
    "Fault",
    "FaultHandle",
    "FaultKind",
    "FlowEmulator",
    "MediaBlob",
    "RequestHold",
]
