"""Peer discovery through Kademlia lookups, with direct connections and eviction.

A peer whose presence went silent is pinged and, if it does not answer, dropped from
the routing table and disconnected (:meth:`Discovery.drop_silent`).

The bootstrap node keeps no list: while fewer than ``connections.low_water`` peers are
connected, each round looks up our own id and a random key per non-empty bucket
(py-libp2p's ``refresh_routing_table``), which teaches both sides of every query about
each other, then dials routing-table peers we are not connected to until
``low_water`` are (:mod:`p2pnode.connmgr` trims the excess). A peer that cannot be
dialled is evicted from the routing table (py-libp2p keeps dead peers forever
otherwise: docs/libp2p.md#dead-peers). Provider records are not used
(docs/libp2p.md#provider-records).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable, Sequence

import multiaddr
import trio
from libp2p.abc import IHost
from libp2p.host.ping import ID as PING_PROTOCOL
from libp2p.host.ping import perform_ping_roundtrip
from libp2p.kad_dht.kad_dht import KadDHT
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo, info_from_p2p_addr
from libp2p.peer.peerstore import PeerStoreError

from p2pnode.config import Config
from p2pnode.connections import dial_budget
from p2pnode.host import disconnect

log = logging.getLogger(__name__)

EVICT_AFTER_FAILURES = 3
"""Consecutive failed dials before a peer is evicted: one timeout on a loaded machine is
not death, and evicting live peers makes an overloaded network fall apart."""


async def dial(host: IHost, info: PeerInfo, timeout_s: float) -> bool:
    """Connect to ``info`` within ``timeout_s``; return whether it worked."""
    with trio.move_on_after(timeout_s):
        try:
            await host.connect(info)
            return True
        except Exception as exc:  # noqa: BLE001 - the library raises many dial errors
            log.debug("dial %s failed: %r", info.peer_id, exc)
    return False


async def join_bootstrap(host: IHost, dht: KadDHT, addrs: Sequence[str], timeout_s: float) -> int:
    """Dial every bootstrap address concurrently; seed the routing table with those reached.

    One unreachable bootstrap node does not stop the others. Returns how many answered.
    """
    joined = 0

    async def one(addr: str) -> None:
        nonlocal joined
        info = info_from_p2p_addr(multiaddr.Multiaddr(addr))
        if info.peer_id == host.get_id():
            return
        if await dial(host, info, timeout_s):
            joined += 1
            await dht.routing_table.add_peer(info)
        else:
            log.warning("bootstrap node %s unreachable", addr)

    async with trio.open_nursery() as nursery:
        for addr in addrs:
            nursery.start_soon(one, addr)
    return joined


class Discovery:
    """Runs lookup-and-dial rounds, backing off while the network is stable.

    Rounds run every ``discovery.interval_s`` while the picture changes and back off
    (doubling) to ``discovery.max_interval_s`` while it is stable. Lookups cost CPU on
    every peer they touch (a 1 s period measured ~4 % of a core per idle daemon), so a
    settled network is probed rarely; :meth:`poke` (a new peer heard on the presence
    topic, a peer gone) brings the next round forward.
    """

    def __init__(self, host: IHost, dht: KadDHT, config: Config,
                 dial_circuit: Callable[[ID], Awaitable[bool]] | None = None,
                 skip: Callable[[ID], bool] = lambda _peer: False) -> None:
        self.host = host
        self.dht = dht
        self.config = config
        self.dial_circuit = dial_circuit
        """Tried when a direct dial fails: a peer behind NAT is reached through a relay."""
        self.skip = skip
        """Peers not to dial (trimmed lately by the connection manager)."""
        self.rounds = 0
        self._poke = trio.Event()
        self._last: frozenset[ID] = frozenset()
        self._failures: dict[ID, int] = {}

    def poke(self) -> None:
        """Run the next round now and restart the back-off."""
        self._poke.set()

    async def run(self) -> None:
        """Loop until cancelled; each round is bounded by ``timeouts.dht_lookup_s``."""
        cfg = self.config.discovery
        delay = cfg.interval_s
        while True:
            changed = await self.round()
            delay = cfg.interval_s if changed else min(delay * 2, cfg.max_interval_s)
            with trio.move_on_after(delay):
                await self._poke.wait()
            if self._poke.is_set():
                self._poke = trio.Event()
                delay = cfg.interval_s

    async def round(self) -> bool:
        """One lookup (bounded) and dials to unconnected routing-table peers.

        Dials only while fewer than ``connections.low_water`` peers are connected, as
        many as reach it (:func:`p2pnode.connections.dial_budget`); looks up only when
        the routing table has fewer candidates than that. A lookup connects to every
        peer it queries, so lookups on a well-connected daemon only undo the
        connection manager's trimming (at 20 daemons trimming to 6-10, rounds every
        2 s re-connected trimmed peers: 258 trims in ~90 s, 12-20 peers).

        Returns whether the routing table changed since the previous round or peers
        were dialled (the network is still settling).
        """
        cfg = self.config
        if not self.host.get_connected_peers() and cfg.node.bootstrap:
            await join_bootstrap(self.host, self.dht, cfg.node.bootstrap, cfg.timeouts.dial_s)
        budget = dial_budget(len(self.host.get_connected_peers()),
                             cfg.connections.low_water, cfg.discovery.max_dials_per_round)
        if budget and len(self._candidates()) < budget:
            with trio.move_on_after(cfg.timeouts.dht_lookup_s):
                try:
                    await self.dht.peer_routing.refresh_routing_table()
                except Exception as exc:  # noqa: BLE001 - a failed lookup is retried
                    log.debug("routing table refresh failed: %r", exc)
        todo = self._candidates()
        budget = dial_budget(len(self.host.get_connected_peers()),
                             cfg.connections.low_water, cfg.discovery.max_dials_per_round)
        async with trio.open_nursery() as nursery:
            for peer_id in todo[:budget]:
                nursery.start_soon(self._dial_or_evict, peer_id)
        self.rounds += 1
        now = frozenset(self.dht.routing_table.get_peer_ids())
        changed, self._last = now != self._last or bool(todo[:budget]), now
        return changed

    def _candidates(self) -> list[ID]:
        """Routing-table peers we could dial now, in random order."""
        connected = set(self.host.get_connected_peers())
        me = self.host.get_id()
        todo = [p for p in self.dht.routing_table.get_peer_ids()
                if p not in connected and p != me and not self.skip(p)]
        random.shuffle(todo)
        return todo

    async def _dial_or_evict(self, peer_id: ID) -> None:
        try:
            addrs = self.host.get_peerstore().addrs(peer_id)
        except Exception:  # noqa: BLE001 - PeerStoreError: unknown or expired addresses
            addrs = []
        direct = [a for a in addrs if "p2p-circuit" not in str(a)]
        if direct and await dial(self.host, PeerInfo(peer_id, direct), self.config.timeouts.dial_s):
            self._failures.pop(peer_id, None)
            return
        if self.dial_circuit is not None and await self.dial_circuit(peer_id):
            self._failures.pop(peer_id, None)
            return
        failures = self._failures[peer_id] = self._failures.get(peer_id, 0) + 1
        if not addrs or failures >= EVICT_AFTER_FAILURES:
            self.evict(peer_id)
            log.debug("evicted unreachable peer %s", peer_id)

    def evict(self, peer_id: ID) -> None:
        """Forget ``peer_id``'s routing entry and addresses until a lookup finds it again.

        py-libp2p keeps dead peers in the routing table and peerstore, and its lookups
        and auto-connector keep dialling them (docs/libp2p.md#dead-peers).
        """
        self._failures.pop(peer_id, None)
        self.dht.routing_table.remove_peer(peer_id)
        try:
            self.host.get_peerstore().clear_addrs(peer_id)
        except PeerStoreError:  # cleared, then raised: "peer ID is expired" (#dead-peers)
            pass

    async def drop_silent(self, peer_id: ID) -> None:
        """Ping a peer whose presence went silent; disconnect it if it does not answer.

        py-libp2p has no keepalive (docs/libp2p.md#no-keepalive), so a frozen peer would otherwise
        stay connected and in the gossip mesh. A peer that only fell behind (an overloaded
        machine) still answers the ping and keeps its connection: cutting it would add churn
        exactly when the network can least afford it. Its addresses stay either way;
        discovery evicts it after repeated dial failures.
        """
        if await self._answers_ping(peer_id):
            log.debug("peer %s silent on presence but answers ping", peer_id)
            return
        self.dht.routing_table.remove_peer(peer_id)
        await disconnect(self.host, peer_id, self.config.timeouts.dial_s)

    async def _answers_ping(self, peer_id: ID) -> bool:
        if peer_id not in self.host.get_connected_peers():
            return False
        with trio.move_on_after(self.config.timeouts.dial_s):
            try:
                stream = await self.host.new_stream(peer_id, [PING_PROTOCOL])
                try:
                    await perform_ping_roundtrip(stream)
                finally:
                    await stream.close()
                return True
            except Exception as exc:  # noqa: BLE001 - any failure means "no answer"
                log.debug("ping %s failed: %r", peer_id, exc)
        return False
