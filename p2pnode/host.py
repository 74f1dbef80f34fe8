"""The one place that wraps py-libp2p 0.8.1's quirks, each written up in docs/libp2p.md.

Each workaround names its section there (``#anchor`` below), which says what the
library does, how it bit and how it is tested, so the workaround can go when the
library is fixed:

- Noise only (``sec_opt``): no plaintext, secio or TLS (#noise-only).
- Gossipsub heartbeat 1 s, not 120 s (#gossip-heartbeat); adaptive gossip and its
  "GRAFT flood" check off, the heartbeat and mesh degree following the network's size
  instead (:func:`tune_gossip`; #adaptive-gossip, #graft-flood).
- Spam protection's per-topic limit from config (#gossip-spam-limit); eclipse
  protection off (#eclipse-protection).
- Library log noise filtered (:func:`quiet_libp2p_logs`, #log-noise).
- Every inbound stream behind a guard, so one handler's exception no longer ends the
  host (:func:`make_host`, #malformed-stream).
- :func:`disconnect`: a close bounded in time, then the entry dropped (#close-peer).
- :func:`guard_gossip`: received gossip paid from a per-peer token bucket, a flooder
  banned and disconnected (#gossip-flood).
- :func:`set_validator`: validators get ``(data, from_peer)``, an exception is a
  refusal, and only a ``REJECT`` is charged to the forwarder (#topic-validators).
- :func:`advertised_addrs`: ``node.announce``, or the interface addresses for an
  unspecified listen IP (#unspecified-addrs); circuit addresses appended after
  ``get_addrs`` (#circuit-addrs), whose answer, read for every RPC sent, is cached for
  ``ADDRS_CACHE_S`` (#per-message-cost).
- ``PY_YAMUX_RELEASE_ON_READ=0`` at import (#yamux-window-updates).
- Applied from here at import: the per-message CPU fixes (:mod:`p2pnode.hotpath`,
  #per-message-cost) and lost subscriptions and the ban's teardown
  (:mod:`p2pnode.pubsubstreams`, #lost-subscriptions, #blacklist-teardown). The
  swarm's own connection limits are handled in :mod:`p2pnode.connmgr`
  (#connection-manager), the start order by
  :class:`p2pnode.node.Node`, the only caller (#start-order).
"""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
import time
import warnings
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import multiaddr
import psutil
import trio
from libp2p import new_host
from libp2p.abc import IHost, INetStream
from libp2p.crypto.keys import KeyPair
from libp2p.crypto.x25519 import create_new_key_pair as create_x25519_key_pair
from libp2p.custom_types import TProtocol
from libp2p.kad_dht.kad_dht import DHTMode, KadDHT
from libp2p.peer.id import ID
from libp2p.pubsub.gossipsub import PROTOCOL_ID, PROTOCOL_ID_V11, GossipSub
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.pubsub import Pubsub
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.security.noise.transport import Transport as NoiseTransport

from p2pnode import hotpath, pubsubstreams
from p2pnode.config import GossipConfig
from p2pnode.peergate import PeerGate
from protocols.gossip import Validator, Verdict

log = logging.getLogger(__name__)

# Yamux sends a WINDOW_UPDATE frame for every read by default in 0.8.1, and pubsub reads
# each message's varint length a byte at a time: one encrypted frame and one send(2)
# back per byte read. go-yamux's rule (update once half the window is used) is what
# the library does with this off (docs/libp2p.md#yamux-window-updates).
os.environ.setdefault("PY_YAMUX_RELEASE_ON_READ", "0")
if os.environ.get("DISTRO_TRAIN_STOCK_LIBP2P") != "1":  # bench/network.py --compare only
    hotpath.apply()
    pubsubstreams.apply()  # docs/libp2p.md#lost-subscriptions
ADDRS_CACHE_S = 1.0
"""How long :func:`make_host`'s ``get_addrs`` answer is reused (while ``extra`` is unchanged)."""

_NOISY = (
    ("libp2p.kad_dht.kad_dht", "Failed to read DHT message from stream"),
    ("libp2p.kad_dht.kad_dht", "Incomplete DHT message from stream"),
    ("libp2p.pubsub.gossipsub", "pending message queue for peer"),
    ("libp2p.kad_dht.peer_routing", "Failed to open stream to"),
    ("libp2p.transport.tcp.tcp", "Failed to open TCP stream"),
    # Relays and peers behind NAT (p2pnode/nat.py, docs/libp2p.md#nat-traversal): a
    # signed peer record older than the one stored is refused with an ERROR, and the
    # relay logs one after every reservation and circuit close.
    ("libp2p.kad_dht.utils", "Failed to update the Certified-Addr-Book"),
    ("libp2p.kad_dht.peer_routing", "Received an invalid-signed-record"),
    ("libp2p.relay.circuit_v2.protocol", "Error reading from hop stream"),
)


class _DropPrefix(logging.Filter):
    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefix)


def quiet_libp2p_logs(level: int = logging.WARNING) -> None:
    """Route py-libp2p logs through ours at ``level`` and drop the known idle noise.

    ``import libp2p`` detaches its logger tree (``propagate = False``, no handler), so
    its warnings go to ``logging.lastResort`` unformatted; re-attach it to the root.
    ``ResourceWarning: unclosed <socket>`` at exit comes from the library's own sockets.
    """
    root = logging.getLogger("libp2p")
    root.propagate = True
    root.setLevel(level)
    logging.getLogger("libp2p.network.auto_connector").setLevel(max(level, logging.WARNING))
    for name, prefix in _NOISY:
        logging.getLogger(name).addFilter(_DropPrefix(prefix))
    warnings.filterwarnings("ignore", category=ResourceWarning)


UNSPECIFIED = frozenset({"0.0.0.0", "::"})


def interface_ips(version: int) -> list[str]:
    """This machine's addresses of IP ``version`` (4 or 6), loopback last."""
    family = socket.AF_INET if version == 4 else socket.AF_INET6
    found: list[str] = []
    for entries in psutil.net_if_addrs().values():
        for entry in entries:
            if entry.family == family and "%" not in entry.address:
                found.append(entry.address)
    return sorted(set(found), key=lambda a: (ipaddress.ip_address(a).is_loopback, a))


def advertised_addrs(
    candidates: Sequence[multiaddr.Multiaddr], announce: Sequence[str]
) -> list[multiaddr.Multiaddr]:
    """What the host tells peers it can be dialled on (docs/libp2p.md#unspecified-addrs).

    ``announce`` wins when given. Otherwise each candidate on ``0.0.0.0`` / ``::`` becomes
    one address per interface IP of that version (non-loopback ones only, unless the
    machine has nothing else); other candidates pass unchanged. Never returns an
    unspecified address.
    """
    if announce:
        return [multiaddr.Multiaddr(a) for a in announce]
    out: list[multiaddr.Multiaddr] = []
    for addr in candidates:
        proto = "ip4" if "ip4" in [p.name for p in addr.protocols()] else "ip6"
        try:
            ip = addr.value_for_protocol(proto)
        except Exception:  # noqa: BLE001 - not an IP address: pass it on as it is
            out.append(addr)
            continue
        if ip not in UNSPECIFIED:
            out.append(addr)
            continue
        ips = interface_ips(4 if proto == "ip4" else 6)
        public = [i for i in ips if not ipaddress.ip_address(i).is_loopback]
        for each in public or ips:
            text = str(addr).replace(f"/{proto}/{ip}/", f"/{proto}/{each}/", 1)
            out.append(multiaddr.Multiaddr(text))
    unique: dict[str, multiaddr.Multiaddr] = {}
    for a in out:
        unique.setdefault(str(a), a)
    return list(unique.values())


def make_host(
    key_pair: KeyPair, listen: Sequence[str], announce: Sequence[str] = (),
    extra: Sequence[str] = (),
) -> IHost:
    """Return an unstarted host: Noise only, every inbound stream behind a guard.

    It advertises ``announce`` when given, else its listen addresses with ``0.0.0.0``
    replaced by the interface addresses (:func:`advertised_addrs`), then ``extra`` as it
    is at each call (relay circuit addresses, kept up to date by :mod:`p2pnode.nat`).
    """
    noise = NoiseTransport(key_pair, noise_privkey=create_x25519_key_pair().private_key)
    announced = list(announce)
    host = new_host(
        key_pair=key_pair,
        sec_opt={TProtocol(NOISE_PROTOCOL_ID): noise},
        listen_addrs=[multiaddr.Multiaddr(a) for a in listen],
        addrs_factory=lambda candidates: advertised_addrs(candidates, announced),
    )
    network = host.get_network()
    network.set_stream_handler(_guard_streams(network.common_stream_handler))
    _advertise_circuits(host, extra)
    return host


def _advertise_circuits(host: IHost, extra: Sequence[str]) -> None:
    """Append ``extra`` (each ending in our ``/p2p/<id>``) to what ``get_addrs`` returns.

    ``BasicHost.get_addrs`` passes factory output through a step that cuts every address
    at its first ``/p2p/`` and appends ours, which turns the circuit address
    ``/ip4/R/tcp/P/p2p/RELAY/p2p-circuit`` into ``/ip4/R/tcp/P/p2p/US``: the relay's
    address under our id (docs/libp2p.md#circuit-addrs). Identify, presence and the
    control API all read ``get_addrs``, so the circuit addresses are added after it.
    """
    inner = host.get_addrs
    me = f"/p2p/{host.get_id()}"
    cached: list[Any] = [(), 0.0, []]  # extra as it was, when, the answer

    def get_addrs() -> list[multiaddr.Multiaddr]:
        now = time.monotonic()
        if cached[0] != tuple(extra) or now - cached[1] > ADDRS_CACHE_S:
            cached[:] = [tuple(extra), now,
                         [*inner(), *(multiaddr.Multiaddr(a + me) for a in extra)]]
        return list(cached[2])

    host.get_addrs = get_addrs


def _guard_streams(
    inner: Callable[[INetStream], Awaitable[None]],
) -> Callable[[INetStream], Awaitable[None]]:
    """Wrap the swarm's inbound-stream handler so a handler failure ends only its stream."""

    async def guarded(stream: INetStream) -> None:
        try:
            await inner(stream)
        except Exception as exc:  # noqa: BLE001 - task boundary of one inbound stream
            peer = getattr(getattr(stream, "muxed_conn", None), "peer_id", "?")
            log.debug("inbound stream from %s failed: %r", peer, exc)
            try:
                await stream.reset()
            except Exception:  # noqa: BLE001 - the stream is being discarded
                log.debug("reset after failure failed", exc_info=True)

    return guarded


def make_pubsub(host: IHost, cfg: GossipConfig) -> tuple[Pubsub, GossipSub]:
    """Return gossipsub router and pubsub (strict signing) for ``host``; not yet started."""
    router = GossipSub(
        protocols=[PROTOCOL_ID_V11, PROTOCOL_ID],
        degree=cfg.mesh_degree,
        degree_low=cfg.mesh_degree_low,
        degree_high=cfg.mesh_degree_high,
        heartbeat_interval=cfg.heartbeat_s,
        adaptive_gossip_enabled=False,
        spam_protection_enabled=True,
        max_messages_per_topic_per_second=cfg.max_messages_per_topic_per_second,
        eclipse_protection_enabled=False,
    )
    # 0.8.1's "GRAFT flood" check keys on when the *peer* last pruned *us* (handle_prune),
    # so a peer that pruned us and grafts again is penalised and pruned, and both sides
    # back off: at 50 daemons an owner's job-topic mesh went empty and its rounds ran to
    # the deadline. A GRAFT inside our own backoff is still refused (handle_graft).
    router.graft_flood_threshold = 0.0
    return Pubsub(host, router, strict_signing=True), router


def gossip_heartbeat_s(cfg: GossipConfig, peers: int) -> int:
    """The heartbeat for a network of ``peers`` others (``gossip.*``).

    Each heartbeat sends IHAVE to max(6, peers / 4) peers per topic with recent
    messages, so every daemon receives about that many each heartbeat: the period
    grows with the network, ``peers / gossip.heartbeat_peers_per_s`` seconds, at
    least ``heartbeat_s`` and at most ``max_heartbeat_s``.
    """
    wanted = peers / cfg.heartbeat_peers_per_s
    return max(cfg.heartbeat_s, min(cfg.max_heartbeat_s, round(wanted)))


def tune_gossip(router: GossipSub, cfg: GossipConfig, peers: int) -> None:
    """Set ``router``'s heartbeat for ``peers`` others (:func:`gossip_heartbeat_s`)."""
    router.heartbeat_interval = gossip_heartbeat_s(cfg, peers)


def reannounce_subscriptions(router: GossipSub) -> int:
    """Send our topic list to every pubsub peer again; return how many were sent to.

    0.8.1 forgets all of a peer's subscriptions when one pubsub stream to it dies, even
    while another connection to it lives (``Pubsub._handle_dead_peer``; simultaneous
    dials at start-up do this), and only that peer's own hello would restore them. At
    30 daemons an owner knew 19 of 29 subscribers of the jobs topic and none of its job
    topic, so trainers' update announcements had nobody to go to (docs/libp2p.md#lost-
    subscriptions). Called every ``gossip.resubscribe_s``.
    """
    pubsub = router.pubsub
    if pubsub is None or not pubsub.topic_ids:
        return 0
    hello = pubsub.get_hello_packet()
    peers = list(pubsub.peers)
    for peer in peers:
        router.send_rpc(peer, hello, priority=True)
    return len(peers)


def gossip_status(router: GossipSub) -> dict[str, Any]:
    """The router's heartbeat, mesh size per topic and the per-message savings."""
    return {
        "heartbeat_s": router.heartbeat_interval,
        "mesh": {topic: len(peers) for topic, peers in router.mesh.items()},
        "fanout": {topic: len(peers) for topic, peers in router.fanout.items()},
        "topic_peers": {topic: len(peers) for topic, peers in router.pubsub.peer_topics.items()}
        if router.pubsub is not None else {},
        "records_skipped": hotpath.RECORDS.skipped,
        "pubsub_peers": len(router.pubsub.peers) if router.pubsub is not None else 0,
        "streams_reopened": pubsubstreams.REOPENED[0],
    }


def make_dht(host: IHost) -> KadDHT:
    """Return a server-mode Kademlia DHT; create it before the first connection.

    Random walk stays off: :mod:`p2pnode.discovery` runs its own lookups on the
    configured interval, with timeouts, and evicts peers it cannot dial.
    """
    return KadDHT(host, DHTMode.SERVER, enable_random_walk=False)


async def disconnect(host: IHost, peer_id: ID, timeout_s: float) -> None:
    """Close every connection to ``peer_id`` within ``timeout_s``, whatever the peer does."""
    network = host.get_network()
    with trio.move_on_after(timeout_s):
        try:
            await host.disconnect(peer_id)
        except Exception as exc:  # noqa: BLE001 - already gone is fine
            log.debug("disconnect %s: %r", peer_id, exc)
    if peer_id in network.connections:
        log.info("connection to %s did not close in %ss; dropped", peer_id, timeout_s)
        network.connections.pop(peer_id, None)


def make_peer_gate(cfg: GossipConfig) -> PeerGate:
    """Return the per-peer gossip rate limit configured by ``gossip.peer_*``."""
    return PeerGate(cfg.peer_messages_per_second, cfg.peer_burst, cfg.peer_invalid_cost,
                    cfg.peer_max_strikes, cfg.peer_ban_s)


def guard_gossip(host: IHost, pubsub: Pubsub, gate: PeerGate, disconnect_s: float) -> None:
    """Put every received gossip message behind ``gate`` (docs/libp2p.md#gossip-flood).

    Call once, before the pubsub service starts. Our own publications pass freely.
    """
    inner = pubsub.push_msg
    me = host.get_id()

    async def push_msg(msg_forwarder: ID, msg: rpc_pb2.Message) -> None:
        if msg_forwarder != me and not gate.admit(msg_forwarder):
            if gate.should_ban(msg_forwarder):
                log.warning("peer %s flooded gossip; banned for %ss", msg_forwarder, gate.ban_s)
                pubsub.add_to_blacklist(msg_forwarder)
                pubsub.manager.run_task(disconnect, host, msg_forwarder, disconnect_s)
            return
        try:
            await inner(msg_forwarder, msg)
        except Exception as exc:  # noqa: BLE001 - task boundary of one received message
            log.debug("gossip message from %s failed: %r", msg_forwarder, exc)
            if msg_forwarder != me:
                gate.charge_invalid(msg_forwarder)

    pubsub.push_msg = push_msg


def lift_expired_bans(pubsub: Pubsub, gate: PeerGate) -> None:
    """Let peers whose ban is over talk gossip again (call periodically)."""
    for peer in gate.expired_bans():
        if isinstance(peer, ID):
            pubsub.remove_from_blacklist(peer)


def set_validator(
    pubsub: Pubsub, topic: str, validator: Validator, gate: PeerGate
) -> None:
    """Drop ``topic``'s messages that ``validator(data, from_peer)`` does not accept.

    Only a ``REJECT`` is charged to the forwarding peer; an ``IGNORE`` (a message
    dated outside the window, which honest peers forward too when anyone is slow) is
    counted in ``gate.ignored``.
    """
    me = pubsub.host.get_id()

    def validate(msg_forwarder: ID, msg: rpc_pb2.Message) -> bool:
        try:
            verdict = validator(bytes(msg.data), ID(msg.from_id))
        except Exception as exc:  # noqa: BLE001 - a validator failure is a refusal
            log.debug("validator for %s failed: %r", topic, exc)
            verdict = Verdict.REJECT
        if verdict is Verdict.IGNORE:
            gate.ignored += 1
        elif verdict is not Verdict.ACCEPT and msg_forwarder != me:
            gate.charge_invalid(msg_forwarder)
        return verdict is Verdict.ACCEPT

    pubsub.set_topic_validator(topic, validate, False)
