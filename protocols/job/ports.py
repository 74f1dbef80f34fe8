"""What the job protocol needs from the daemon (implemented by ``p2pnode.node.Node``).

Declared here so the job protocol depends on an interface, not on the process
that hosts it; tests can hand in any object with these members.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from libp2p.crypto.keys import PrivateKey
from libp2p.peer.id import ID

TopicHandler = Callable[[bytes, ID], Awaitable[None]]
RequestHandler = Callable[[bytes, ID], Awaitable[bytes]]


class NodeLike(Protocol):
    """The daemon services a job behaviour uses."""

    @property
    def peer_id(self) -> ID:
        """This daemon's peer id."""

    @property
    def private_key(self) -> PrivateKey:
        """This daemon's libp2p identity key (signs and opens sealed payloads)."""

    async def publish(self, topic: str, data: bytes) -> None:
        """Publish ``data`` on gossipsub ``topic``."""

    def subscribe(self, topic: str, handler: TopicHandler) -> None:
        """Deliver every message on ``topic`` to ``handler(data, from_peer)``."""

    async def unsubscribe(self, topic: str) -> None:
        """Stop delivering ``topic``."""

    def set_stream_handler(self, protocol_id: str, handler: RequestHandler) -> None:
        """Answer one-request/one-response streams of ``protocol_id`` with ``handler``."""

    async def request(
        self,
        peer_id: ID,
        protocol_id: str,
        data: bytes,
        timeout: float | None = None,  # noqa: ASYNC109 - the daemon's own deadline parameter
    ) -> bytes:
        """Send one request to ``peer`` and return its response (raises on timeout)."""

    def live_peers(self) -> Sequence[str]:
        """Base58 ids of peers heard from recently (presence not timed out)."""

    def health(self) -> dict[str, Any]:
        """This daemon's own current status: health, accepting, cpu_count, free slots."""
