"""One shared HTTP client per role for presigned transfers, created on first use.

A client per transfer costs a TLS context and a new connection each time (tens of
milliseconds per round on a busy machine); one per role keeps connections alive and
keeps httpx out of a daemon that never transfers anything.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import trio

if TYPE_CHECKING:
    import httpx


class LazyClient:
    """Holds an ``httpx.AsyncClient`` from ``storage.transfer.new_client``."""

    def __init__(self, allow_networks: Sequence[str] | None = None) -> None:
        """Make nothing yet.

        Args:
            allow_networks: None for a client that may reach any address (the owner's
                own storage); else only public addresses plus these CIDR networks (a
                trainer, whose URLs a stranger chose).
        """
        self._client: httpx.AsyncClient | None = None
        self._allow = allow_networks

    def get(self) -> httpx.AsyncClient:
        """The client, made on the first call."""
        if self._client is None:
            from storage import transfer  # httpx only when transferring
            from storage.httpio import AddressPolicy

            if self._allow is None:
                self._client = transfer.new_client()
            else:
                policy = AddressPolicy(self._allow)
                self._client = transfer.new_client(policy=policy)
        return self._client

    async def aclose(self) -> None:
        """Close the client if one was made (idempotent, shielded from cancellation)."""
        client, self._client = self._client, None
        if client is not None:
            with trio.CancelScope(shield=True):
                await client.aclose()
