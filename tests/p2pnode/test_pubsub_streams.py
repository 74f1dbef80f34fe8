"""Pubsub streams and subscriptions survive a dead stream (p2pnode/pubsubstreams.py).

Two in-process hosts with the daemon's pubsub set-up (``make_host``/``make_pubsub``),
both subscribed to one topic. Each test breaks A's outbound pubsub stream to B the way
simultaneous dials do, and checks that A still knows B's subscription and that A's
publications reach B again. Every wait is a condition with a deadline.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import multiaddr
import trio
import trio.testing
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.pubsub.gossipsub import GossipSub
from libp2p.pubsub.pubsub import Pubsub
from libp2p.tools.anyio_service import background_trio_service

from p2pnode import pubsubstreams
from p2pnode.config import GossipConfig
from p2pnode.host import make_host, make_pubsub
from tests.conftest import wait_until

TOPIC = "stream-test"
LISTEN = ["/ip4/127.0.0.1/tcp/0"]


@dataclass
class Peer:
    pubsub: Pubsub
    router: GossipSub
    received: list[bytes]

    @property
    def id(self) -> ID:
        return self.pubsub.host.get_id()


@asynccontextmanager
async def peer(nursery: trio.Nursery) -> AsyncIterator[Peer]:
    """A started host + pubsub, subscribed to ``TOPIC``, recording what it receives."""
    host = make_host(create_new_key_pair(), LISTEN)
    pubsub, router = make_pubsub(host, GossipConfig())
    listen = [multiaddr.Multiaddr(a) for a in LISTEN]
    async with host.run(listen_addrs=listen), background_trio_service(pubsub):
        async with background_trio_service(router):
            await pubsub.wait_until_ready()
            sub = await pubsub.subscribe(TOPIC)
            me = Peer(pubsub, router, [])

            async def pump() -> None:
                while True:
                    msg = await sub.get()
                    me.received.append(bytes(msg.data))

            nursery.start_soon(pump)
            yield me


async def connected_pair(a: Peer, b: Peer) -> None:
    """Connect ``a`` to ``b`` and wait until each has a stream to and knows the other."""
    addr = multiaddr.Multiaddr(f"{b.pubsub.host.get_addrs()[0]}")
    await a.pubsub.host.connect(info_from_p2p_addr(addr))
    def knows(x: Peer, y: Peer) -> bool:
        return y.id in x.pubsub.peers and y.id in x.pubsub.peer_topics.get(TOPIC, set())

    await wait_until(lambda: knows(a, b) and knows(b, a), 20,
                     "pubsub streams and subscriptions both ways")


async def reaches(a: Peer, b: Peer, data: bytes) -> None:
    """Publish ``data`` from ``a`` until ``b`` has it (the mesh may still be forming)."""
    with trio.move_on_after(30) as scope:
        while data not in b.received:
            await a.pubsub.publish(TOPIC, data)
            await wait_until_or_not(lambda: data in b.received, 1.0)
    assert not scope.cancelled_caught, f"{data!r} never reached B"


async def wait_until_or_not(predicate: Callable[[], bool], seconds: float) -> None:
    with trio.move_on_after(seconds):
        while not predicate():  # noqa: ASYNC110 - state owned by the pump task
            await trio.sleep(0.05)


async def test_a_dead_stream_to_a_connected_peer_keeps_its_subscriptions() -> None:
    async with trio.open_nursery() as nursery, peer(nursery) as a, peer(nursery) as b:
        await connected_pair(a, b)
        old = a.pubsub.peers[b.id]
        await old.reset()  # A's next write to B fails: the library declares B dead
        await a.pubsub.publish(TOPIC, b"after-reset")
        await wait_until(lambda: a.pubsub.peers.get(b.id) not in (None, old), 20,
                         "A to re-open its stream to B")
        # Stock 0.8.1 forgets B's subscription here; B has no reason to send it again.
        assert b.id in a.pubsub.peer_topics.get(TOPIC, set())
        await reaches(a, b, b"over-the-new-stream")
        nursery.cancel_scope.cancel()


def drop_stream(a: Peer, b: Peer) -> None:
    """Leave ``a`` as the library does when its stream re-open gave up.

    No stream to ``b``, no queue, ``b`` gone from the router, while ``b`` stays
    connected.
    """
    del a.pubsub.peers[b.id]
    a.pubsub.peer_queues.pop(b.id).close()
    a.router.remove_peer(b.id)


async def test_a_connected_peer_without_a_stream_gets_one_again() -> None:
    async with trio.open_nursery() as nursery, peer(nursery) as a, peer(nursery) as b:
        await connected_pair(a, b)
        drop_stream(a, b)
        assert b.id in a.pubsub.host.get_network().connections
        before = pubsubstreams.REOPENED[0]
        assert pubsubstreams.reopen_missing_streams(a.pubsub) == 0  # within the grace
        assert pubsubstreams.reopen_missing_streams(a.pubsub, grace_s=0) == 1
        # One re-open in flight per peer.
        assert pubsubstreams.reopen_missing_streams(a.pubsub, grace_s=0) == 0
        assert pubsubstreams.REOPENED[0] == before + 1
        await wait_until(lambda: b.id in a.pubsub.peers, 20, "A's stream to B re-opened")
        await reaches(a, b, b"after-reopen")
        nursery.cancel_scope.cancel()


async def test_two_registrations_at_once_open_one_stream() -> None:
    async with trio.open_nursery() as nursery, peer(nursery) as a, peer(nursery) as b:
        await connected_pair(a, b)
        drop_stream(a, b)
        opened: list[object] = []
        host = a.pubsub.host
        inner = host.new_stream

        async def counting_new_stream(*args: object, **kwargs: object) -> object:
            stream = await inner(*args, **kwargs)
            opened.append(stream)
            return stream

        host.new_stream = counting_new_stream
        async with trio.open_nursery() as both:
            both.start_soon(a.pubsub._handle_new_peer, b.id)
            both.start_soon(a.pubsub._handle_new_peer, b.id)
        # Stock 0.8.1 opens two here and orphans the first one's sending task.
        assert len(opened) == 1 and a.pubsub.peers[b.id] is opened[0]
        await reaches(a, b, b"one-stream")
        nursery.cancel_scope.cancel()


async def test_registration_never_dials_a_disconnected_peer() -> None:
    async with trio.open_nursery() as nursery, peer(nursery) as a, peer(nursery) as b:
        await connected_pair(a, b)
        network = a.pubsub.host.get_network()
        await a.pubsub.host.disconnect(b.id)
        await wait_until(lambda: b.id not in network.connections, 10, "A and B disconnected")
        # What the library's retry loop does after a connection closed under it (a
        # trimmed peer): stock 0.8.1 opens the stream with new_stream, which dials.
        await a.pubsub._handle_new_peer(b.id)
        assert b.id not in network.connections
        nursery.cancel_scope.cancel()


async def test_a_ban_whose_peer_is_removed_meanwhile_leaves_pubsub_running() -> None:
    """The ban's teardown and the disconnect race; stock 0.8.1's KeyError ended pubsub."""
    async with trio.open_nursery() as nursery, peer(nursery) as a, peer(nursery) as b:
        await connected_pair(a, b)
        stream = a.pubsub.peers[b.id]
        inner = stream.reset

        async def reset_while_disconnected() -> None:
            await inner()
            a.pubsub._handle_dead_peer(b.id)  # the connection's notifee, meanwhile

        stream.reset = reset_while_disconnected
        a.pubsub.add_to_blacklist(b.id)
        await wait_until(lambda: b.id not in a.pubsub.peers
                         and b.id not in a.pubsub.peer_topics.get(TOPIC, set()), 20,
                         "the banned peer's stream and subscriptions gone")
        await trio.testing.wait_all_tasks_blocked()
        assert a.pubsub.manager.is_running
        nursery.cancel_scope.cancel()
