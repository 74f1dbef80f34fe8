"""The daemon's own control methods: ``node.*`` always, ``debug.*`` when enabled.

Other packages register theirs on ``node.routes`` the same way (see p2pnode/rpc.py).
The routes see the node through :class:`NodeView`, the part of
:class:`p2pnode.node.Node` they use, so this module does not import the node back.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from libp2p.peer.id import ID

from p2pnode.config import Config
from p2pnode.peerinfo import PeerInfo
from p2pnode.rpc import InvalidParams, Routes

DEBUG_TOPIC_PREFIX = "/distro-train/debug/"
MAX_DEBUG_MESSAGES = 1000


class NodeView(Protocol):
    """What the ``node.*`` and ``debug.*`` routes need from a node."""

    peer_id: ID
    role: str
    config: Config
    routes: Routes
    peer_extras: list[Callable[[str], dict[str, Any]]]

    def addrs(self) -> list[str]:
        """This node's listen addresses."""

    def peers(self) -> list[PeerInfo]:
        """The live peers."""

    def status(self) -> dict[str, Any]:
        """A JSON-able snapshot of the node."""

    def subscribe(self, topic: str, handler: Callable[[bytes, ID], Awaitable[None]]) -> None:
        """Deliver ``topic``'s messages to ``handler``."""

    async def publish(self, topic: str, data: bytes) -> None:
        """Publish ``data`` on ``topic``."""


def register_node_routes(node: NodeView) -> None:
    """Add ``node.id``, ``node.peers``, ``node.status`` (and ``debug.*`` if configured)."""

    async def node_id(params: dict[str, Any]) -> dict[str, Any]:
        return {"peer_id": node.peer_id.to_base58(), "addrs": node.addrs(), "role": node.role}

    async def node_peers(params: dict[str, Any]) -> list[dict[str, Any]]:
        out = []
        for p in node.peers():
            record = p.to_json()
            for extra in node.peer_extras:
                record.update(extra(record["peer_id"]))
            out.append(record)
        return out

    async def node_status(params: dict[str, Any]) -> dict[str, Any]:
        return node.status()

    node.routes.add("node.id", node_id, doc="This node's peer id and addresses.")
    node.routes.add("node.peers", node_peers, doc="Live peers with their presence status.")
    node.routes.add("node.status", node_status, doc="A snapshot of this node.")
    if node.config.control.debug_routes:
        _register_debug_routes(node)


def _register_debug_routes(node: NodeView) -> None:
    """Gossip probes for tests and benchmarks: topics under ``/distro-train/debug/``."""
    received: dict[str, deque[dict[str, Any]]] = {}

    def topic_of(params: dict[str, Any]) -> str:
        name = str(params["topic"])
        if not name or len(name) > 64 or not name.isascii():
            raise InvalidParams("topic", "1-64 ASCII characters")
        return DEBUG_TOPIC_PREFIX + name

    async def subscribe(params: dict[str, Any]) -> dict[str, Any]:
        topic = topic_of(params)
        if topic not in received:
            log: deque[dict[str, Any]] = deque(maxlen=MAX_DEBUG_MESSAGES)
            received[topic] = log

            async def on_message(data: bytes, from_peer: ID) -> None:
                log.append({"from": from_peer.to_base58(), "data": data.decode(errors="replace"),
                            "received_at": time.time()})

            node.subscribe(topic, on_message)
        return {"topic": topic}

    async def publish(params: dict[str, Any]) -> dict[str, Any]:
        topic = topic_of(params)
        await node.publish(topic, params["data"].encode())
        return {"topic": topic, "published_at": time.time()}

    async def messages(params: dict[str, Any]) -> list[dict[str, Any]]:
        return list(received.get(topic_of(params), ()))

    node.routes.add("debug.subscribe", subscribe, required={"topic": str},
                    doc="Subscribe to a debug topic and record its messages.")
    node.routes.add("debug.publish", publish, required={"topic": str, "data": str},
                    doc="Publish a text message on a debug topic.")
    node.routes.add("debug.messages", messages, required={"topic": str},
                    doc="Messages recorded on a debug topic (last 1000).")
