"""FlowAccess: how a worker process reaches Flow, as a picklable recipe.

A ``requests.Session`` must never cross a fork, so jobs carry this recipe
instead of a client, and each worker builds (and keeps) its own
:class:`~veo3dl.FlowClient` from it.  When the parent runs a coordinator,
the client shares bearer tokens and 429 pauses with every other worker
through it.
"""

from __future__ import annotations

import attrs

from veo3dl._client import FlowClient
from veo3dl._coordination import CoordinatorAddress, CoordinatorLink
from veo3dl._credentials import Credentials
from veo3dl._http import RetryPolicy

__all__ = ["FlowAccess"]


@attrs.frozen(repr=False)
class FlowAccess:
    """Everything needed to build a :class:`~veo3dl.FlowClient` in a worker."""

    credentials: Credentials
    labs_url: str
    api_url: str
    timeout: float | tuple[float, float]
    retry: RetryPolicy
    allowed_file_hosts: frozenset[str] | None = None
    coordinator: CoordinatorAddress | None = None

    def __repr__(self) -> str:
        shared = ", coordinated" if self.coordinator else ""
        return f"FlowAccess(labs_url={self.labs_url!r}, api_url={self.api_url!r}{shared})"

    @classmethod
    def of(cls, client: FlowClient, coordinator: CoordinatorAddress | None = None) -> FlowAccess:
        """The recipe for a client configured like *client*."""
        return cls(
            credentials=client.credentials,
            labs_url=client.labs_url,
            api_url=client.api_url,
            timeout=client.timeout,
            retry=client.retry,
            allowed_file_hosts=client.allowed_file_hosts,
            coordinator=coordinator,
        )

    def build(self) -> FlowClient:
        """A client for this process; coordinated when a coordinator was given."""
        if self.coordinator is None:
            return self._client()
        holder: list[FlowClient] = []
        # The fallback needs the client, which needs the link: bind it late.
        link = CoordinatorLink(self.coordinator, fallback=lambda: holder[0].own_token_source())  # noqa: PLW0108
        client = self._client(link)
        holder.append(client)
        return client

    def _client(self, link: CoordinatorLink | None = None) -> FlowClient:
        return FlowClient(
            self.credentials,
            labs_url=self.labs_url,
            api_url=self.api_url,
            timeout=self.timeout,
            retry=self.retry,
            allowed_file_hosts=self.allowed_file_hosts,
            token_source=link,
            gate=link,
        )
