"""The node's gossip subscriptions: one pump and one bounded queue per topic.

py-libp2p hands each subscription a 32-slot queue (docs/libp2p.md#subscription-queue);
a pump task empties it at once into a queue of ``gossip.subscription_queue`` entries,
and a drain task feeds the topic's handler from there, so a slow handler drops (and
counts) messages instead of stalling gossip for every topic.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import trio
from libp2p.peer.id import ID
from libp2p.pubsub.pubsub import Pubsub

from p2pnode.host import set_validator
from p2pnode.peergate import PeerGate
from protocols.envelope import ReplayGuard
from protocols.gossip import Validator, default_validator

log = logging.getLogger(__name__)

TopicHandler = Callable[[bytes, ID], Awaitable[None]]
"""``async handler(data, from_peer)``; called once per message, in order, per topic."""

StartSoon = Callable[..., None]
"""``start_soon(fn, *args)``: run ``fn(*args)`` in the node's nursery (at ready, if earlier)."""


@dataclass(eq=False)
class Topics:
    """Which topics this node delivers, to which handler; see :meth:`Node.subscribe`.

    Args:
        pubsub: the node's pubsub.
        peer_id: this node's id (its own messages are not delivered).
        replay: the replay guard the default validators share.
        peer_gate: the per-peer gossip rate limit refused messages are charged to.
        queue_size: ``gossip.subscription_queue``.
        start_soon: how pump tasks are started.
    """

    pubsub: Pubsub
    peer_id: ID
    replay: ReplayGuard
    peer_gate: PeerGate
    queue_size: int
    start_soon: StartSoon
    handlers: dict[str, TopicHandler] = field(default_factory=dict, init=False)
    dropped: int = field(default=0, init=False)
    """Messages dropped because a handler fell ``queue_size`` messages behind."""
    _scopes: dict[str, trio.CancelScope] = field(default_factory=dict, init=False)

    def names(self) -> list[str]:
        """The subscribed topics, sorted."""
        return sorted(self.handlers)

    def subscribe(self, topic: str, handler: TopicHandler, validator: Validator | None) -> None:
        """Deliver ``topic`` to ``handler`` (replacing any earlier one), validated first."""
        known = topic in self.handlers
        self.handlers[topic] = handler
        self._install_validator(topic, validator)
        if not known:
            self.start_soon(self._pump, topic)

    async def unsubscribe(self, topic: str, timeout_s: float) -> None:
        """Stop delivering ``topic``; leave its mesh within ``timeout_s`` (unknown: ignored)."""
        self.handlers.pop(topic, None)
        self.pubsub.remove_topic_validator(topic)
        scope = self._scopes.pop(topic, None)
        if scope is not None:
            scope.cancel()
        if topic in self.pubsub.topic_ids:
            with trio.move_on_after(timeout_s):
                await self.pubsub.unsubscribe(topic)

    def _install_validator(self, topic: str, validator: Validator | None) -> None:
        chosen = validator or default_validator(topic, self.replay)
        if chosen is None:
            self.pubsub.remove_topic_validator(topic)
        else:
            set_validator(self.pubsub, topic, chosen, self.peer_gate)

    async def _pump(self, topic: str) -> None:
        if topic not in self.handlers:
            return  # unsubscribed before this task ran
        with trio.CancelScope() as scope:
            self._scopes[topic] = scope
            sub: Any = await self.pubsub.subscribe(topic)
            send, recv = trio.open_memory_channel[tuple[bytes, ID]](self.queue_size)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._drain, topic, recv)
                async with send:
                    while True:
                        msg = await sub.get()
                        try:
                            sender = ID(msg.from_id)
                        except Exception:  # noqa: BLE001 - malformed from_id from the network
                            continue
                        if sender == self.peer_id:
                            continue
                        try:
                            send.send_nowait((bytes(msg.data), sender))
                        except trio.WouldBlock:
                            self.dropped += 1

    async def _drain(self, topic: str, recv: trio.MemoryReceiveChannel[tuple[bytes, ID]]) -> None:
        async with recv:
            async for data, sender in recv:
                handler = self.handlers.get(topic)
                if handler is None:
                    return
                try:
                    await handler(data, sender)
                except Exception:  # task boundary: one bad message must not stop the topic
                    log.exception("handler for %s failed on a message from %s", topic, sender)
