"""The connection manager (p2pnode/connections.py, p2pnode/connmgr.py).

Which peers are trimmed is pure logic and tested as such; two in-process tests check
the wiring on real hosts: the swarm accepts inbound connections again after earlier
ones closed (py-libp2p 0.8.1 held an inbound slot for the swarm's whole life), and a
trim disconnects the unprotected peer and keeps the protected one.
"""

from __future__ import annotations

from pathlib import Path

import multiaddr
import pytest
from libp2p import new_host
from libp2p.abc import IHost
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.network.config import ConnectionConfig
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.tools.anyio_service import background_trio_service

from p2pnode.config import Config, GossipConfig
from p2pnode.connections import ConnectionsConfig, PeerView, dial_budget, over_ip_limit, plan_trim
from p2pnode.connmgr import ConnManager, limit_swarm
from p2pnode.errors import ConfigError
from p2pnode.host import make_host, make_pubsub
from tests.conftest import wait_until

LISTEN = [multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]


def view(name: str, *, protected: bool = False, inbound: bool = True, age: float = 100.0,
         topics: int = 1) -> PeerView:
    return PeerView(name, protected, inbound, age, topics)


def test_nothing_is_trimmed_up_to_high_water() -> None:
    peers = [view(f"p{i}") for i in range(8)]
    assert plan_trim(peers, low_water=4, high_water=8, grace_s=10) == []


def test_above_high_water_trims_down_to_low_water() -> None:
    peers = [view(f"p{i}") for i in range(9)]
    assert len(plan_trim(peers, low_water=4, high_water=8, grace_s=10)) == 5


def test_protected_and_young_peers_are_never_trimmed() -> None:
    peers = [view("bootstrap", protected=True), view("young", age=5.0),
             *(view(f"p{i}") for i in range(4))]
    trimmed = plan_trim(peers, low_water=1, high_water=2, grace_s=10)
    assert sorted(map(str, trimmed)) == ["p0", "p1", "p2", "p3"]  # 6 - 1 wanted, 4 eligible


def test_least_useful_go_first() -> None:
    peers = [view("outbound-old", inbound=False, age=500), view("inbound-old", age=500),
             view("inbound-new", age=50), view("no-topics", inbound=False, topics=0),
             view("kept", protected=True)]
    # No shared topic first, then inbound before outbound, then the youngest.
    assert plan_trim(peers, low_water=1, high_water=2, grace_s=10) == [
        "no-topics", "inbound-new", "inbound-old", "outbound-old"]
    assert plan_trim(peers, low_water=3, high_water=4, grace_s=10) == [
        "no-topics", "inbound-new"]


def test_discovery_dials_only_up_to_low_water() -> None:
    assert dial_budget(connected=0, low_water=16, max_per_round=32) == 16
    assert dial_budget(connected=10, low_water=16, max_per_round=4) == 4
    assert dial_budget(connected=16, low_water=16, max_per_round=32) == 0
    assert dial_budget(connected=40, low_water=16, max_per_round=32) == 0


def test_inbound_per_ip_limit_exempts_loopback() -> None:
    open_now = ["10.0.0.5"] * 3 + ["10.0.0.6"]
    assert over_ip_limit(open_now, "10.0.0.5", limit=3)
    assert not over_ip_limit(open_now, "10.0.0.6", limit=3)
    assert not over_ip_limit(["127.0.0.1"] * 50, "127.0.0.1", limit=3)
    assert not over_ip_limit(["::1"] * 50, "::1", limit=3)


def test_config_refuses_high_water_below_low_water(tmp_path: Path) -> None:
    cfg = Config.for_tests(tmp_path)
    cfg.connections = ConnectionsConfig(low_water=10, high_water=5)
    with pytest.raises(ConfigError, match="connections.high_water"):
        cfg.validate()


def test_every_connections_field_is_documented() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "daemon.md").read_text()
    for name in ConnectionsConfig.__dataclass_fields__:
        assert f"`connections.{name}`" in doc, name


async def connect(dialer: IHost, to: IHost) -> None:
    await dialer.connect(info_from_p2p_addr(multiaddr.Multiaddr(str(to.get_addrs()[0]))))
    await wait_until(lambda: dialer.get_id() in to.get_network().connections, 10,
                     "the connection registered on both sides")


async def test_inbound_slots_come_back_when_connections_close() -> None:
    # Stock 0.8.1 sizes its inbound limiter from max_connections - min_connections and
    # releases a slot only when the swarm stops: here the 4th inbound connection of
    # the host's life would be refused although at most one is ever open.
    a = new_host(key_pair=create_new_key_pair(), connection_config=ConnectionConfig(
        max_connections=3, min_connections=0, low_watermark=0, high_watermark=3))
    limit_swarm(a, ConnectionsConfig(max_connections=3))
    b = new_host(key_pair=create_new_key_pair())
    async with a.run(listen_addrs=LISTEN), b.run(listen_addrs=LISTEN):
        for _ in range(6):
            await connect(b, a)
            await b.disconnect(a.get_id())
            await wait_until(lambda: b.get_id() not in a.get_network().connections, 10,
                             "the connection closed on A")


async def test_trim_keeps_protected_peers_and_drops_the_rest() -> None:
    a = make_host(create_new_key_pair(), ["/ip4/127.0.0.1/tcp/0"])
    pubsub, router = make_pubsub(a, GossipConfig())
    cfg = ConnectionsConfig(low_water=1, high_water=1, grace_s=0.001)
    limit_swarm(a, cfg)
    manager = ConnManager(a, router, cfg, set, disconnect_s=5.0)
    b, c = (new_host(key_pair=create_new_key_pair()) for _ in range(2))
    async with a.run(listen_addrs=LISTEN), background_trio_service(pubsub), \
            background_trio_service(router), b.run(listen_addrs=LISTEN), \
            c.run(listen_addrs=LISTEN):
        await pubsub.wait_until_ready()
        await connect(b, a)
        await connect(c, a)
        manager.touch(b.get_id())  # a request with B: protected for active_s
        await wait_until(lambda: all(v.age_s >= cfg.grace_s for v in manager.views()), 10,
                         "both connections past the grace period")
        assert await manager.trim_once() == 1
        assert list(a.get_network().connections) == [b.get_id()]
        assert manager.recently_trimmed(c.get_id())
        assert not manager.recently_trimmed(b.get_id())
        assert await manager.trim_once() == 0  # one peer: not above high water
        # py-libp2p's auto-connector would dial C again (once its 60 s disconnect
        # back-off is over: cleared here) towards its target of 64 connections.
        connector = a.get_network().auto_connector
        connector._recent_disconnects.clear()
        await connector.maybe_connect()
        assert c.get_id() not in a.get_network().connections


class FakeInbound:
    """An accepted socket from ``ip`` as the swarm's inbound handler sees it."""

    def __init__(self, ip: str) -> None:
        self.ip = ip
        self.closed = False

    def get_remote_address(self) -> tuple[str, int]:
        return self.ip, 40000

    async def close(self) -> None:
        self.closed = True


async def test_inbound_connections_beyond_the_per_ip_limit_are_refused() -> None:
    host = new_host(key_pair=create_new_key_pair())
    swarm = host.get_network()
    admitted: list[str] = []

    async def inner(conn: FakeInbound, maddr: object, event: object) -> None:
        admitted.append(conn.ip)  # the library's handshake would start here

    swarm._do_handle_inbound_connection = inner
    limit_swarm(host, ConnectionsConfig(max_per_ip=3))
    handle = swarm._do_handle_inbound_connection
    flood = [FakeInbound("10.9.8.7") for _ in range(5)]
    for conn in flood:
        await handle(conn, None, None)
    await handle(FakeInbound("10.9.8.6"), None, None)
    for _ in range(5):
        await handle(FakeInbound("127.0.0.1"), None, None)
    assert admitted == ["10.9.8.7"] * 3 + ["10.9.8.6"] + ["127.0.0.1"] * 5
    assert [c.closed for c in flood] == [False] * 3 + [True] * 2


async def test_a_flood_from_many_addresses_is_refused_past_the_accept_rate() -> None:
    host = new_host(key_pair=create_new_key_pair())
    swarm = host.get_network()
    admitted: list[str] = []

    async def inner(conn: FakeInbound, maddr: object, event: object) -> None:
        admitted.append(conn.ip)

    swarm._do_handle_inbound_connection = inner
    limit_swarm(host, ConnectionsConfig(max_connections=2))
    handle = swarm._do_handle_inbound_connection
    for i in range(20):  # 4 x max_connections accepts per 10 s, then refused
        await handle(FakeInbound(f"10.0.{i}.1"), None, None)
    assert len(admitted) == 8
