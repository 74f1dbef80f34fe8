"""NAT traversal: reachability, circuit relay v2 and hole punching (docs/network.md).

The one place that wraps py-libp2p 0.8.1's relay code (docs/libp2p.md#nat-traversal):

- Reachability is our own dial-back (:data:`DIALBACK_PROTOCOL`), not the shipped AutoNAT,
  which answers OK over the connection it already has without dialling back, so a
  closed port is reported reachable. A daemon asks each bootstrap node it is connected
  to; the bootstrap node opens a fresh TCP connection to the IP it sees the request
  come from, on the ports the daemon listens on, and answers which one opened. It dials
  nothing but the requester's own observed IP, so it cannot be used against third
  parties. ``public`` when any port opened, ``private`` when none did.
- Bootstrap nodes serve as relays (``CircuitV2Protocol(allow_hop=True)``) with the
  limits of ``[nat]``. A ``private`` daemon reserves a slot on every bootstrap node it
  is connected to and advertises ``<relay addr>/p2p-circuit`` next to its own
  addresses; reservations are renewed every ``nat.reservation_refresh_s``.
- ``host.connect`` refuses circuit addresses ("relay-only ... unusable"): circuit
  addresses are dialled with the circuit transport's ``dial`` (:meth:`Nat.dial_circuit`),
  which :mod:`p2pnode.discovery` calls when a direct dial fails.
- Hole punching: ``DCUtRProtocol(host, dial_timeout=nat.hole_punch_dial_s)`` (2 s)
  upgrades relayed connections to direct ones where the NATs allow (measured ~2.3 s; the
  library's default waits 10 s on the LAN address first). Where it fails the relayed
  connection stays.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from typing import Any, Protocol

import multiaddr
import trio
from libp2p.abc import IHost
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID
from libp2p.relay.circuit_v2.config import RelayConfig, RelayRole
from libp2p.relay.circuit_v2.dcutr import DCUtRProtocol
from libp2p.relay.circuit_v2.protocol import PROTOCOL_ID as HOP_PROTOCOL
from libp2p.relay.circuit_v2.protocol import CircuitV2Protocol
from libp2p.relay.circuit_v2.resources import RelayLimits
from libp2p.relay.circuit_v2.transport import CircuitV2Transport
from libp2p.tools.anyio_service import background_trio_service

import distro_json
from p2pnode.config import Config
from p2pnode.reqresp import RequestHandler


class Node(Protocol):
    """What of :class:`p2pnode.node.Node` this module uses (no import cycle)."""

    host: IHost
    config: Config
    role: str
    extra_addrs: list[str]

    def set_stream_handler(self, protocol_id: str, handler: RequestHandler) -> None:
        """Answer requests on ``protocol_id``."""

    async def request(self, peer_id: ID, protocol_id: str, data: bytes,
                      timeout: float | None = None) -> bytes:  # noqa: ASYNC109 - as Node's
        """One request, one response."""

log = logging.getLogger(__name__)

DIALBACK_PROTOCOL = "/distro-train/dialback/1"
MAX_DIALBACK_PORTS = 4
"""At most this many ports are tried per dial-back request."""
REACHABILITY = ("unknown", "public", "private")


def tcp_ports(addrs: Iterable[str]) -> list[int]:
    """The TCP ports of ``addrs`` (multiaddr strings), in order, without repeats."""
    ports: list[int] = []
    for addr in addrs:
        parts = addr.split("/")
        if "tcp" in parts and "p2p-circuit" not in parts:
            try:
                port = int(parts[parts.index("tcp") + 1])
            except (ValueError, IndexError):
                continue
            if 0 < port < 65536 and port not in ports:
                ports.append(port)
    return ports


def remote_ip(node: Node, peer: ID) -> str | None:
    """The IP our connection to ``peer`` comes from, or None (relayed, unknown)."""
    conns: Any = node.host.get_network().connections.get(peer)
    for conn in conns if isinstance(conns, list) else [conns]:
        try:
            address = conn.muxed_conn.get_remote_address()
        except Exception:  # noqa: BLE001 - connection types differ; no address is fine
            address = None
        if address:
            return str(address[0])
    return None


def _is_relayed(conn: Any) -> bool:
    try:
        return any("p2p-circuit" in str(a) for a in conn.get_transport_addresses())
    except Exception:  # noqa: BLE001 - connection types differ; unknown is direct
        return False


async def _opens(ip: str, port: int, timeout_s: float) -> bool:
    with trio.move_on_after(timeout_s):
        try:
            stream = await trio.open_tcp_stream(ip, port)
        except OSError:
            return False
        await stream.aclose()
        return True
    return False


class Nat:
    """The relay service (bootstrap nodes), reservations, hole punching, reachability."""

    def __init__(self, node: Node) -> None:
        self.node = node
        cfg = node.config.nat
        self.serves_relay = node.role == "bootstrap" and cfg.relay_service
        limits = RelayLimits(
            duration=cfg.relay_circuit_duration_s,
            data=cfg.relay_circuit_bytes,
            max_circuit_conns=cfg.relay_max_circuits,
            max_reservations=cfg.relay_max_reservations,
        )
        roles = RelayRole.STOP | RelayRole.CLIENT
        if self.serves_relay:
            roles |= RelayRole.HOP
        self.protocol = CircuitV2Protocol(node.host, limits=limits, allow_hop=self.serves_relay)
        self.transport = CircuitV2Transport(
            node.host, self.protocol, RelayConfig(roles=roles, limits=limits))
        self.dcutr = (DCUtRProtocol(node.host, dial_timeout=cfg.hole_punch_dial_s)
                      if cfg.hole_punch else None)
        self.reachability = "unknown"
        self.relays: dict[ID, str] = {}
        """Relays holding a reservation for us: peer id -> circuit address."""
        self.circuit_dials = 0
        self.relayed_bytes = 0
        """Bytes this relay carried between two peers (its circuit reads, counted around
        the protocol's ``_read_stream_with_retry``, which only relaying uses)."""
        inner_read = self.protocol._read_stream_with_retry

        async def counted_read(*args: Any, **kwargs: Any) -> bytes:
            data: bytes = await inner_read(*args, **kwargs)
            self.relayed_bytes += len(data or b"")
            return data

        self.protocol._read_stream_with_retry = counted_read

    def relayed_peers(self) -> list[ID]:
        """Connected peers whose every connection goes through a relay."""
        out = []
        for peer, conns in self.node.host.get_network().connections.items():
            listed = conns if isinstance(conns, list) else [conns]
            if listed and all(_is_relayed(c) for c in listed):
                out.append(peer)
        return out

    def status(self) -> dict[str, Any]:
        """What ``node.status`` reports under ``nat``."""
        return {"reachability": self.reachability, "relay_service": self.serves_relay,
                "relays": sorted(self.relays.values()), "circuit_dials": self.circuit_dials,
                "relayed_peers": len(self.relayed_peers()),
                "relayed_bytes": self.relayed_bytes,
                "relay_active_circuits": len(getattr(self.protocol, "_active_relays", {}))}

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the relay protocol (and DCUtR) until cancelled; probe and reserve."""
        self.node.set_stream_handler(DIALBACK_PROTOCOL, self._answer_dialback)
        async with background_trio_service(self.protocol), trio.open_nursery() as nursery:
            if self.dcutr is not None:
                nursery.start_soon(self._run_dcutr)
            task_status.started()
            if self.node.role == "bootstrap":
                await trio.sleep_forever()
            while True:
                await self.check(nursery)
                await trio.sleep(self.node.config.nat.reservation_refresh_s)

    async def _run_dcutr(self) -> None:
        assert self.dcutr is not None
        async with background_trio_service(self.dcutr):
            await trio.sleep_forever()

    def _bootstrap_peers(self) -> list[tuple[ID, str]]:
        connected = set(self.node.host.get_connected_peers())
        out = []
        for addr in self.node.config.node.bootstrap:
            peer = ID.from_base58(addr.rsplit("/p2p/", 1)[1])
            if peer in connected:
                out.append((peer, addr))
        return out

    async def check(self, nursery: trio.Nursery) -> None:
        """Ask the bootstrap nodes whether we are reachable; reserve relay slots if not."""
        bootstraps = self._bootstrap_peers()
        verdicts = []
        for peer, _ in bootstraps:
            verdicts.append(await self.probe(peer))
        if "public" in verdicts:
            self._set_reachability("public")
        elif "private" in verdicts:
            self._set_reachability("private")
        if self.reachability != "private" or not self.node.config.nat.use_relays:
            return
        for peer, addr in bootstraps:
            await self.reserve(peer, addr, nursery)

    def _set_reachability(self, value: str) -> None:
        if value != self.reachability:
            log.info("reachability: %s", value)
        self.reachability = value

    async def probe(self, peer: ID) -> str:
        """``public``, ``private`` or ``unknown`` (no answer) according to ``peer``."""
        ports = tcp_ports(str(a) for a in self.node.host.get_transport_addrs())
        try:
            raw = await self.node.request(peer, DIALBACK_PROTOCOL,
                                          json.dumps({"ports": ports}).encode())
            answer = distro_json.loads(raw)
        except Exception as exc:  # noqa: BLE001 - a peer that cannot answer tells nothing
            log.debug("dial-back by %s failed: %r", peer, exc)
            return "unknown"
        verdict = answer.get("reachability") if isinstance(answer, dict) else None
        return verdict if verdict in ("public", "private") else "unknown"

    async def _answer_dialback(self, request: bytes, from_peer: ID) -> bytes:
        try:
            body = distro_json.loads(request)
            ports = [p for p in body["ports"] if isinstance(p, int) and 0 < p < 65536]
        except (ValueError, KeyError, TypeError):
            return json.dumps({"error": "malformed"}).encode()
        ip = remote_ip(self.node, from_peer)
        if ip is None:
            return json.dumps({"reachability": "unknown"}).encode()
        for port in ports[:MAX_DIALBACK_PORTS]:
            if await _opens(ip, port, self.node.config.nat.dialback_connect_s):
                return json.dumps({"reachability": "public", "addr": f"{ip}:{port}"}).encode()
        return json.dumps({"reachability": "private", "observed": ip}).encode()

    async def reserve(self, relay: ID, relay_addr: str, nursery: trio.Nursery) -> bool:
        """Reserve a slot on ``relay``; on success advertise the circuit address."""
        timeout = self.node.config.timeouts.request_s
        ok = False
        with trio.move_on_after(timeout):
            try:
                stream = await self.node.host.new_stream(relay, [TProtocol(HOP_PROTOCOL)])
                ok = await self.transport.reserve(stream, relay, nursery)
            except Exception as exc:  # noqa: BLE001 - a refused or failed reservation
                log.debug("reservation on %s failed: %r", relay, exc)
        circuit = f"{relay_addr}/p2p-circuit"
        if ok and relay not in self.relays:
            log.info("relay reservation on %s: reachable at %s", relay, circuit)
        if ok:
            self.relays[relay] = circuit
            self.node.extra_addrs[:] = sorted(set(self.relays.values()))
        return ok

    async def dial_circuit(self, peer: ID, addrs: Iterable[multiaddr.Multiaddr]) -> bool:
        """Connect to ``peer`` through a relay address of it, if it has one."""
        for addr in addrs:
            if "p2p-circuit" not in str(addr):
                continue
            target = addr if "/p2p-circuit/p2p/" in str(addr) else addr.encapsulate(
                multiaddr.Multiaddr(f"/p2p/{peer}"))
            with trio.move_on_after(self.node.config.timeouts.dial_s * 2):
                try:
                    await self.transport.dial(target)
                    self.circuit_dials += 1
                    return True
                except Exception as exc:  # noqa: BLE001 - the library raises many dial errors
                    log.debug("circuit dial %s failed: %r", target, exc)
        return False
