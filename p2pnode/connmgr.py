"""The connection manager: keeps a daemon within ``[connections]`` (docs/network.md#connections).

Before it, discovery dialled every peer it found, so each of N daemons held N - 1
connections (1,225 at 50 daemons on two cores) and a stranger could open as many as
it liked. Now:

- discovery dials only while fewer than ``low_water`` peers are connected
  (:func:`p2pnode.connections.dial_budget`), and not peers trimmed lately;
- every ``check_s`` the peers above ``high_water`` are trimmed down to ``low_water``
  by :func:`p2pnode.connections.plan_trim`; bootstrap nodes, relays, gossip mesh
  members and peers we sent a request to lately are protected;
- inbound connections beyond ``max_connections`` in all, or ``max_per_ip`` from one
  address, or more than 4 x ``max_connections`` accepted within 10 s, are refused
  before the handshake.

What it replaces in py-libp2p 0.8.1 (docs/libp2p.md#connection-manager): the swarm's
own connection manager would fight it. Its auto-connector dials every peerstore peer
until ``(low_watermark + high_watermark) / 2`` = 200 connections (every 10 s while
below ``min_connections`` = 50, and after every disconnect, skipping a peer only for
60 s after it disconnected), so a trimmed peer came back. Its pruner never closes a
connection that has a stream open, and every connection carries a pubsub stream. Its
inbound limiter is a capacity limiter held by the accepting task until the swarm
stops, not until the connection closes, so a daemon accepts only
``max_connections - min_connections`` inbound connections in its whole life.
:func:`limit_swarm` turns the first two off (their entry points do nothing) and the
third into a limit on open connections.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import multiaddr
import trio
from libp2p.abc import IHost
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.pubsub.gossipsub import GossipSub
from libp2p.rcmgr import Direction

from p2pnode.connections import ConnectionsConfig, PeerView, over_ip_limit, plan_trim
from p2pnode.host import disconnect

log = logging.getLogger(__name__)

UPGRADE_WINDOW_S = 10.0
"""py-libp2p's inbound upgrade timeout: an accepted connection that has not finished its
handshake within this is gone, so recent accepts count against ``max_per_ip`` this long."""
ACCEPTS_PER_WINDOW = 4
"""At most this many times ``max_connections`` inbound connections are accepted per
``UPGRADE_WINDOW_S`` from all addresses together (a flood from many addresses)."""
MAX_TRACKED = 10_000


def limit_swarm(host: IHost, cfg: ConnectionsConfig) -> None:
    """Point the swarm's own limits at ``cfg`` and refuse floods (see the module docstring)."""
    swarm: Any = host.get_network()
    conf = swarm.connection_config
    conf.max_connections = cfg.max_connections
    conf.min_connections = conf.low_watermark = 0
    conf.high_watermark = cfg.max_connections
    swarm.auto_connector.maybe_connect = _nothing  # we dial (discovery) and trim
    swarm.connection_pruner.maybe_prune_connections = _nothing
    swarm._inbound_limiter = trio.CapacityLimiter(math.inf)
    inner = swarm._do_handle_inbound_connection
    recent: list[tuple[float, str]] = []

    async def gated(read_write_closer: Any, maddr: Any, failure_event: Any) -> None:
        ip = _remote_ip(read_write_closer)
        if ip is not None:
            now = time.monotonic()
            recent[:] = [(t, i) for t, i in recent if now - t < UPGRADE_WINDOW_S]
            open_ips = [i for i in map(_conn_ip, swarm.get_connections()) if i]
            pending = [i for _, i in recent]
            if (len(recent) >= ACCEPTS_PER_WINDOW * cfg.max_connections
                    or over_ip_limit(open_ips, ip, cfg.max_per_ip)
                    or over_ip_limit(pending, ip, cfg.max_per_ip)):
                log.debug("inbound connection from %s refused (%d per IP, %d accepted in "
                          "%ss)", ip, cfg.max_per_ip, len(recent), UPGRADE_WINDOW_S)
                await _close_quietly(read_write_closer)
                return
            recent.append((now, ip))
        await inner(read_write_closer, maddr, failure_event)

    swarm._do_handle_inbound_connection = gated


async def _nothing() -> None:
    return None


def _remote_ip(conn: Any) -> str | None:
    try:
        addr = conn.get_remote_address()
    except Exception:  # noqa: BLE001 - a transport without addresses: not limited
        return None
    return str(addr[0]) if addr else None


def _conn_ip(conn: Any) -> str | None:
    return _remote_ip(getattr(conn, "muxed_conn", None))


async def _close_quietly(conn: Any) -> None:
    try:
        await conn.close()
    except Exception:  # noqa: BLE001 - being refused anyway
        log.debug("closing a refused connection failed", exc_info=True)


def always_kept(node: Any) -> set[ID]:
    """The peers of ``node`` (a :class:`p2pnode.node.Node`) that are never trimmed.

    Its bootstrap nodes, its relays, and (on a relay) the peers holding a reservation.
    """
    keep = set(node.nat.relays)
    for addr in node.config.node.bootstrap:
        try:
            keep.add(info_from_p2p_addr(multiaddr.Multiaddr(addr)).peer_id)
        except Exception:  # noqa: BLE001 - validated at start; skipped if not
            continue
    if node.nat.serves_relay:
        slots = node.nat.protocol.resource_manager
        keep |= {p for p in node.host.get_connected_peers() if slots.has_reservation(p)}
    return keep


@dataclass(eq=False)
class ConnManager:
    """Trims connections to ``[connections]`` and remembers what protects a peer.

    Attributes:
        host: The node's host.
        router: Its gossipsub router (mesh members are protected; topics give value).
        cfg: ``[connections]``.
        protected: The ids always kept (bootstrap nodes, relays), asked at each check.
        disconnect_s: The bound on one disconnect (``timeouts.dial_s``).
        trimmed: Peers disconnected by trimming in this process.
    """

    host: IHost
    router: GossipSub
    cfg: ConnectionsConfig
    protected: Callable[[], set[ID]]
    disconnect_s: float
    trimmed: int = field(default=0, init=False)
    _active: dict[ID, float] = field(default_factory=dict, init=False, repr=False)
    _trimmed_at: dict[ID, float] = field(default_factory=dict, init=False, repr=False)

    def touch(self, peer: ID) -> None:
        """We sent ``peer`` a request: protect it for ``active_s``."""
        now = time.monotonic()
        if len(self._active) >= MAX_TRACKED:
            self._active = {p: t for p, t in self._active.items()
                            if now - t < self.cfg.active_s}
        self._active[peer] = now

    def recently_trimmed(self, peer: ID) -> bool:
        """Whether we trimmed ``peer`` within ``retrim_s`` (discovery leaves it alone)."""
        at = self._trimmed_at.get(peer)
        return at is not None and time.monotonic() - at < self.cfg.retrim_s

    def views(self) -> list[PeerView]:
        """One :class:`PeerView` per connected peer."""
        now, wall = time.monotonic(), time.time()
        pubsub = self.router.pubsub
        ours = set(pubsub.topic_ids) if pubsub is not None else set()
        subscribers = pubsub.peer_topics if pubsub is not None else {}
        keep = set(self.protected())
        for members in self.router.mesh.values():
            keep |= members
        keep |= {p for p, t in self._active.items() if now - t < self.cfg.active_s}
        views = []
        for peer, conns in list(self.host.get_network().connections.items()):
            if not conns:
                continue
            born = [getattr(c, "_created_at", wall) for c in conns]
            views.append(PeerView(
                peer=peer, protected=peer in keep,
                inbound=all(getattr(c, "direction", None) == Direction.INBOUND for c in conns),
                age_s=wall - min(born),
                shared_topics=sum(1 for t in ours if peer in subscribers.get(t, ()))))
        return views

    async def trim_once(self) -> int:
        """Disconnect the peers :func:`plan_trim` picks; return how many."""
        cfg = self.cfg
        victims = plan_trim(self.views(), cfg.low_water, cfg.high_water, cfg.grace_s)
        now = time.monotonic()
        if len(self._trimmed_at) >= MAX_TRACKED:
            self._trimmed_at = {p: t for p, t in self._trimmed_at.items()
                                if now - t < cfg.retrim_s}
        for peer in victims:
            if isinstance(peer, ID):
                self._trimmed_at[peer] = now
                await disconnect(self.host, peer, self.disconnect_s)
        if victims:
            self.trimmed += len(victims)
            log.info("trimmed %d connections (%d peers connected, high water %d)",
                     len(victims), len(self.host.get_connected_peers()), cfg.high_water)
        return len(victims)

    async def run(self) -> None:
        """Check and trim every ``check_s`` until cancelled."""
        while True:
            await trio.sleep(self.cfg.check_s)
            try:
                await self.trim_once()
            except Exception:  # noqa: BLE001 - one failed check must not end the daemon
                log.exception("connection trim failed")

    def status(self) -> dict[str, Any]:
        """``node.status`` ``connections_managed``: limits and what was trimmed."""
        cfg = self.cfg
        return {"low_water": cfg.low_water, "high_water": cfg.high_water,
                "max_connections": cfg.max_connections, "trimmed": self.trimmed}
