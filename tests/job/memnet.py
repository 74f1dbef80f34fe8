"""An in-process network of job-protocol nodes, for fast tests of owner/trainer logic.

It stands in for libp2p only (publish, subscribe, request/response, liveness,
presence times);
everything else is real: signed envelopes, sealing, storage server, training.
The same behaviours run over real daemons in tests/e2e.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import trio
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.crypto.keys import PrivateKey
from libp2p.peer.id import ID

from protocols.job.ports import RequestHandler, TopicHandler


class MemNet:
    """Nodes that deliver to each other through ``nursery``."""

    def __init__(self, nursery: trio.Nursery) -> None:
        self.nursery = nursery
        self.nodes: dict[ID, MemNode] = {}

    def add(self) -> MemNode:
        node = MemNode(self)
        self.nodes[node.peer_id] = node
        return node


class MemNode:
    def __init__(self, net: MemNet) -> None:
        self.net = net
        kp = create_new_key_pair()
        self._key = kp.private_key
        self._id = ID.from_pubkey(kp.public_key)
        self.topics: dict[str, TopicHandler] = {}
        self.handlers: dict[str, RequestHandler] = {}
        self.alive = True
        self.silent_since: float | None = None
        """Set: a dead daemon presence still lists (unreachable, last heard then)."""
        self.refused_requests = 0
        """Requests made to this node while it was silent."""
        self.published: list[tuple[str, bytes]] = []
        self.health_score = 90.0

    @property
    def peer_id(self) -> ID:
        return self._id

    @property
    def private_key(self) -> PrivateKey:
        return self._key

    async def publish(self, topic: str, data: bytes) -> None:
        self.published.append((topic, data))
        for node in list(self.net.nodes.values()):
            if node is not self and node.alive and topic in node.topics:
                self.net.nursery.start_soon(node.topics[topic], data, self.peer_id)

    def subscribe(self, topic: str, handler: TopicHandler) -> None:
        self.topics[topic] = handler

    async def unsubscribe(self, topic: str) -> None:
        self.topics.pop(topic, None)

    def set_stream_handler(self, protocol_id: str, handler: RequestHandler) -> None:
        self.handlers[protocol_id] = handler

    async def request(
        self,
        peer_id: ID,
        protocol_id: str,
        data: bytes,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> bytes:
        target = self.net.nodes.get(peer_id)
        if target is not None and target.silent_since is not None:
            target.refused_requests += 1
        if target is None or not target.alive or target.silent_since is not None:
            raise ConnectionError(f"{peer_id} unreachable")
        with trio.fail_after(timeout or 10):
            return await target.handlers[protocol_id](data, self.peer_id)

    def live_peers(self) -> Sequence[str]:
        return [p.to_base58() for p, n in self.net.nodes.items() if n.alive and n is not self]

    def last_heard(self, peer: str) -> float | None:
        node = self.net.nodes.get(ID.from_base58(peer))
        if node is None or not node.alive:
            return None
        return time.monotonic() if node.silent_since is None else node.silent_since

    def health(self) -> dict[str, Any]:
        return {"health": self.health_score, "accepting": True, "cpu_count": 2}
