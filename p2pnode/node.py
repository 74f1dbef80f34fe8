"""The daemon's process core: host, pubsub, DHT, discovery, presence, control socket.

Start order (docs/libp2p.md#start-order): host listening -> pubsub + gossipsub services ->
``wait_until_ready`` -> DHT created -> bootstrap dialled and routing table seeded -> DHT
service -> control socket, subscriptions, discovery, presence -> extension services.

Extension points for other packages (stable; changes are additive):

- ``node.peer_id``, ``node.private_key``, ``node.host``, ``node.config``
- ``await node.publish(topic, data)``; ``node.subscribe(topic, handler)``;
  ``await node.unsubscribe(topic)``
- ``node.set_stream_handler(protocol_id, handler)``; ``await node.request(...)``
- ``node.peers()``; ``node.local_status()``; ``node.set_queue_length(n)``
- ``node.status()``; ``node.routes.add(...)``
- ``node.add_service(fn)``: ``async fn(node, *, task_status)`` started after ready
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import multiaddr
import psutil
import trio
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID
from libp2p.tools.anyio_service import background_trio_service

from p2pnode.config import Config
from p2pnode.connmgr import ConnManager, always_kept, limit_swarm
from p2pnode.discovery import Discovery, join_bootstrap
from p2pnode.host import (
    gossip_status,
    guard_gossip,
    lift_expired_bans,
    make_dht,
    make_host,
    make_peer_gate,
    make_pubsub,
    reannounce_subscriptions,
    tune_gossip,
)
from p2pnode.identity import load_or_create_identity, write_atomic
from p2pnode.nat import Nat
from p2pnode.peerinfo import PeerInfo, peer_info_from_entry
from p2pnode.presence import Presence
from p2pnode.pubsubstreams import reopen_missing_streams
from p2pnode.reqresp import RequestHandler, make_stream_handler
from p2pnode.reqresp import request as _request
from p2pnode.routes import register_node_routes
from p2pnode.rpc import Routes
from p2pnode.topics import TopicHandler, Topics
from protocols.envelope import ReplayGuard
from protocols.gossip import Validator
from protocols.pb import distro_pb2 as pb
from protocols.presence import TOPIC as PRESENCE_TOPIC

log = logging.getLogger(__name__)

Service = Callable[..., Awaitable[None]]
"""``async service(node, *, task_status)``: started in the node's nursery after ready."""

ROLES = ("daemon", "bootstrap")
MAX_PENDING_STARTS = 256
"""Topic pumps and services registered but not yet started by :meth:`Node.run`."""
_Start = Callable[[trio.Nursery], Awaitable[None]]


class Node:
    """One daemon (``role="daemon"``) or bootstrap node (``role="bootstrap"``).

    A bootstrap node relays the presence topic and logs peers joining and leaving, but
    publishes no presence of its own, so daemons do not list it as a worker.
    """

    def __init__(self, config: Config, *, role: str = "daemon") -> None:
        if role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}")
        self.config = config
        self.role = role
        self.key_pair = load_or_create_identity(config.node.data_dir)
        self.private_key = self.key_pair.private_key
        self.peer_id = ID.from_pubkey(self.key_pair.public_key)
        self.extra_addrs: list[str] = []
        """Addresses advertised besides the host's own (relay circuits; :mod:`p2pnode.nat`)."""
        self.host = make_host(self.key_pair, config.node.listen, config.node.announce,
                              self.extra_addrs)
        limit_swarm(self.host, config.connections)
        self.nat = Nat(self)
        self.pubsub, self.gossipsub = make_pubsub(self.host, config.gossip)
        self.connections = ConnManager(self.host, self.gossipsub, config.connections,
                                       lambda: always_kept(self), config.timeouts.dial_s)
        self.peer_gate = make_peer_gate(config.gossip)
        guard_gossip(self.host, self.pubsub, self.peer_gate, config.timeouts.dial_s)
        self.dht: Any = None
        self.routes = Routes()
        self.peer_extras: list[Callable[[str], dict[str, Any]]] = []
        """Functions adding fields to each ``node.peers`` record (e.g. reputation)."""
        self.ready = trio.Event()
        self._created = time.monotonic()
        self._ready_after_s: float | None = None
        self._starts, self._pending_starts = trio.open_memory_channel[_Start](MAX_PENDING_STARTS)
        g = config.gossip
        replay = ReplayGuard(g.replay_window_s, g.replay_capacity,
                             future_skew_s=g.future_skew_s, per_sender=g.replay_per_sender)
        self.topics = Topics(self.pubsub, self.peer_id, replay, self.peer_gate,
                             g.subscription_queue, self._start_soon)
        self.presence = Presence(config, self.private_key, replay)
        self.peer_table = self.presence.table
        self.sampler = self.presence.sampler
        self._discovery: Discovery | None = None
        register_node_routes(self)

    @property
    def dropped_messages(self) -> int:
        """Gossip messages dropped because a topic's handler fell behind."""
        return self.topics.dropped

    # ----- extension points -------------------------------------------------------

    def add_service(self, service: Service) -> None:
        """Start ``service(node, task_status=...)`` in the node's nursery once ready."""

        async def start(nursery: trio.Nursery) -> None:
            await nursery.start(service, self)

        self._starts.send_nowait(start)

    async def publish(self, topic: str, data: bytes) -> None:
        """Publish ``data`` on ``topic`` (signed by gossipsub), within ``timeouts.publish_s``.

        Raises:
            trio.TooSlowError: The publish did not complete in time.
        """
        with trio.fail_after(self.config.timeouts.publish_s):
            await self.pubsub.publish(topic, data)

    def subscribe(
        self, topic: str, handler: TopicHandler, validator: Validator | None = None
    ) -> None:
        """Deliver ``topic``'s messages from other peers to ``handler``.

        ``validator(data, from_peer) -> Verdict`` runs before a message is delivered or
        forwarded to other peers; refused messages go nowhere, and a ``REJECT`` costs the
        forwarding peer (``gossip.peer_*``; :mod:`protocols.gossip` says which refusals
        are only ``IGNORE``). Without one, distro-train topics (presence, jobs,
        each job's topic) get the envelope validator of :mod:`protocols.gossip`
        (Ed25519 signature by the gossip sender, kind for the topic, time window);
        other topics get none. Validators remember no nonce: replay checks stay in
        the handler.

        Messages are pulled from py-libp2p's 32-slot subscription queue
        (docs/libp2p.md#subscription-queue) at once into a queue of
        ``gossip.subscription_queue`` entries, drained by a task of its own; if the handler
        falls that far behind, new messages are dropped and counted in
        ``status()["dropped_messages"]``. Handler exceptions are logged, never fatal. One
        handler per topic: subscribing again replaces the handler (messages already queued
        go to the new one). This node's own messages are not delivered. May be called before
        or after :meth:`run` starts (:mod:`p2pnode.topics`).
        """
        self.topics.subscribe(topic, handler, validator)

    async def unsubscribe(self, topic: str) -> None:
        """Stop delivering ``topic`` and leave its gossip mesh; unknown topics are ignored."""
        await self.topics.unsubscribe(topic, self.config.timeouts.publish_s)

    def set_stream_handler(self, protocol_id: str, handler: RequestHandler) -> None:
        """Answer requests made with :meth:`request` on ``protocol_id``.

        ``handler(request: bytes, from_peer: ID) -> bytes``; sizes are limited by
        ``control.max_peer_message_bytes`` and the exchange by ``timeouts.request_s``.
        """
        cfg = self.config
        wrapped = make_stream_handler(
            handler, cfg.control.max_peer_message_bytes, cfg.timeouts.request_s,
            cfg.timeouts.stream_close_s,
        )
        self.host.set_stream_handler(TProtocol(protocol_id), wrapped)

    async def request(
        self,
        peer_id: ID,
        protocol_id: str,
        data: bytes,
        timeout: float | None = None,  # noqa: ASYNC109 - per-request budget, see docstring
    ) -> bytes:
        """Send one request to ``peer_id`` and return its response.

        Args:
            peer_id: The peer to ask.
            protocol_id: Protocol id its handler was registered with.
            data: Request bytes (at most ``control.max_peer_message_bytes``).
            timeout: Seconds for the whole exchange; default ``timeouts.request_s``.

        Raises:
            RequestError: With ``reason`` ``timeout``, ``too_large``, ``dial`` or ``closed``
                (see :func:`p2pnode.reqresp.request`).
        """
        cfg = self.config
        self.connections.touch(peer_id)  # kept connected: we chose to work with it
        return await _request(
            self.host, peer_id, protocol_id, data,
            timeout_s=cfg.timeouts.request_s if timeout is None else timeout,
            max_bytes=cfg.control.max_peer_message_bytes,
            close_timeout_s=cfg.timeouts.stream_close_s,
        )

    def set_queue_length(self, n: int) -> None:
        """Report ``n`` queued/running work items; the next presence status carries it."""
        self.sampler.queue_length = max(0, n)

    def local_status(self) -> pb.Presence:
        """Return this node's latest published presence status (sampled now if none yet).

        Does not advance ``seq`` or disturb the CPU measurement window after the first
        publish; health and ``accepting`` follow ``work.min_health_to_work``.
        """
        return self.presence.local_status(self.addrs())

    def peers(self) -> list[PeerInfo]:
        """Return the live peers (heard on the presence topic within the silence timeout)."""
        now = time.monotonic()
        connected = set(self.host.get_connected_peers())
        return [peer_info_from_entry(e, now, e.peer_id in connected)
                for e in self.peer_table.entries()]

    def live_peers(self) -> list[str]:
        """Base58 ids of the live peers (``protocols.job.ports.NodeLike``)."""
        return [e.peer_id.to_base58() for e in self.peer_table.entries()]

    def last_heard(self, peer: str) -> float | None:
        """When ``peer``'s last presence arrived (``time.monotonic()``; ``NodeLike``)."""
        try:
            entry = self.peer_table.get(ID.from_base58(peer))
        except ValueError:
            return None
        return None if entry is None else entry.last_seen

    def health(self) -> dict[str, Any]:
        """Our own latest status: health, accepting, cpu_count (``NodeLike``)."""
        status = self.local_status()
        return {
            "health": status.health,
            "accepting": status.accepting,
            "cpu_count": status.cpu_count,
        }

    def addrs(self) -> list[str]:
        """Return this node's listen addresses, each ending in ``/p2p/<peer id>``."""
        return [str(a) for a in self.host.get_addrs()]

    def status(self) -> dict[str, Any]:
        """Return a JSON-able snapshot of the node (see docs/control.md, ``node.status``)."""
        proc = psutil.Process()
        return {
            "peer_id": self.peer_id.to_base58(),
            "role": self.role,
            "addrs": self.addrs(),
            "bootstrap": list(self.config.node.bootstrap),
            "ready": self.ready.is_set(),
            "ready_after_s": self._ready_after_s,
            "uptime_s": round(time.monotonic() - self._created, 3),
            "peers": len(self.peer_table),
            "connected": len(self.host.get_connected_peers()),
            "connections": len(self.host.get_network().get_connections()),
            "connections_managed": self.connections.status(),
            "routing_table": self.dht.routing_table.size() if self.dht is not None else 0,
            "discovery_rounds": self._discovery.rounds if self._discovery else 0,
            "topics": self.topics.names(),
            "dropped_messages": self.dropped_messages,
            "gossip_rate_limited": self.peer_gate.dropped,
            "gossip_bans": self.peer_gate.bans,
            "gossip_ignored": self.peer_gate.ignored,
            "rss_bytes": proc.memory_info().rss,
            "torch_imported": "torch" in sys.modules,
            "pid": os.getpid(),
            "presence": self.presence.last_status,
            "nat": self.nat.status(),
            "presence_interval_s": round(self.presence.period(), 3),
            "gossip": gossip_status(self.gossipsub),
            "routes": self.routes.names(),
        }

    # ----- lifecycle --------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[Node] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the node until cancelled; ``task_status.started(self)`` once it is ready.

        Ready means: listening, pubsub and DHT running, bootstrap dialled (success not
        required), control socket accepting. Cancellation shuts everything down and
        removes the control socket and the ``multiaddr`` file.
        """
        from p2pnode.control import ControlServer, socket_path

        cfg = self.config
        listen = [multiaddr.Multiaddr(a) for a in cfg.node.listen]
        async with self.host.run(listen_addrs=listen), background_trio_service(self.pubsub):
            async with background_trio_service(self.gossipsub):
                await self.pubsub.wait_until_ready()
                self.dht = make_dht(self.host)
                joined = await join_bootstrap(
                    self.host, self.dht, cfg.node.bootstrap, cfg.timeouts.dial_s)
                if cfg.node.bootstrap and not joined:
                    log.warning("no bootstrap node reachable yet; will keep trying")
                async with background_trio_service(self.dht), trio.open_nursery() as nursery:
                    control = ControlServer(
                        socket_path(cfg.node.data_dir), self.routes,
                        cfg.control.max_request_bytes, cfg.timeouts.control_read_s)
                    await nursery.start(control.run)
                    if cfg.web.enabled:
                        from p2pnode.web.server import WebServer  # h11 when enabled

                        await nursery.start(WebServer(cfg, self.routes).run)
                    try:
                        await self._start_tasks(nursery)
                        task_status.started(self)
                        nursery.start_soon(self._run_starts, nursery)
                        await trio.sleep_forever()
                    finally:
                        (cfg.node.data_dir / "multiaddr").unlink(missing_ok=True)

    async def _start_tasks(self, nursery: trio.Nursery) -> None:
        if PRESENCE_TOPIC not in self.topics.handlers:
            self.subscribe(PRESENCE_TOPIC, self._on_presence)
        self._discovery = Discovery(self.host, self.dht, self.config, self._dial_circuit,
                                    self.connections.recently_trimmed)
        nursery.start_soon(self._discovery.run)
        nursery.start_soon(self.connections.run)
        await nursery.start(self.nat.run)
        nursery.start_soon(self._expire_loop, self._discovery)
        if self.role == "daemon":
            nursery.start_soon(self.presence.publish_loop, self.publish, self.addrs)
        if self.role == "bootstrap":
            write_atomic(self.config.node.data_dir / "multiaddr",
                         (self.addrs()[0] + "\n").encode(), mode=0o644)
        self._ready_after_s = round(time.monotonic() - self._created, 3)
        self.ready.set()
        while True:  # what was registered before ready: topic pumps, then services
            try:
                start = self._pending_starts.receive_nowait()
            except trio.WouldBlock:
                break
            await start(nursery)

    def _start_soon(self, fn: Callable[..., Awaitable[None]], *args: Any) -> None:
        """Have :meth:`run`'s nursery start ``fn(*args)`` (at ready, if called before)."""

        async def start(nursery: trio.Nursery) -> None:
            nursery.start_soon(fn, *args)

        self._starts.send_nowait(start)

    async def _run_starts(self, nursery: trio.Nursery) -> None:
        async for start in self._pending_starts:
            await start(nursery)

    async def _on_presence(self, data: bytes, from_peer: ID) -> None:
        if self.presence.observe(data, from_peer) and self._discovery is not None:
            self._discovery.poke()

    async def _dial_circuit(self, peer_id: ID) -> bool:
        """Reach ``peer_id`` through a relay address from its presence (behind NAT)."""
        entry = self.peer_table.get(peer_id)
        if entry is None:
            return False
        addrs = []
        for text in entry.status.addrs:
            try:
                addrs.append(multiaddr.Multiaddr(text))
            except Exception:  # noqa: BLE001 - a peer's bad address is skipped
                continue
        return await self.nat.dial_circuit(peer_id, addrs)

    async def _expire_loop(self, discovery: Discovery) -> None:
        resubscribed = time.monotonic()
        while True:
            for peer_id in self.peer_table.expire(time.monotonic()):
                log.info("peer left %s (silent; %d live)", peer_id, len(self.peer_table))
                await discovery.drop_silent(peer_id)
                discovery.poke()
            lift_expired_bans(self.pubsub, self.peer_gate)
            tune_gossip(self.gossipsub, self.config.gossip, len(self.host.get_connected_peers()))
            reopen_missing_streams(self.pubsub)  # docs/libp2p.md#lost-subscriptions
            if time.monotonic() - resubscribed >= self.config.gossip.resubscribe_s:
                reannounce_subscriptions(self.gossipsub)
                resubscribed = time.monotonic()
            presence = self.config.presence
            await trio.sleep(min(presence.expire_check_s, presence.interval_s))
