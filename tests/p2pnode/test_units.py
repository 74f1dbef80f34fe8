"""Pure unit tests: config, health score, presence codec, peer table, JSON-RPC dispatch."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.peer.id import ID

from p2pnode.config import Config, load_config
from p2pnode.errors import ConfigError
from p2pnode.jobs import settings_from_table
from p2pnode.rpc import InvalidParams, Routes, dispatch
from protocols.envelope import ReplayGuard
from protocols.errors import EnvelopeError
from protocols.job.selection import ReputationConfig
from protocols.job.trainerconfig import TrainerConfig
from protocols.pb import distro_pb2 as pb
from protocols.presence.codec import decode_presence, encode_presence, health_score
from protocols.presence.table import PeerTable

BOOT = "/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWDzpVNmq32sN8YuoWTCQRPBGg764m5abgzD3NbvyRzhfC"


# ----- config -----------------------------------------------------------------------

def test_defaults_and_test_defaults_validate(tmp_path: Path) -> None:
    Config().validate()
    cfg = Config.for_tests(tmp_path).validate()
    assert cfg.presence.interval_s < Config().presence.interval_s
    assert cfg.work.min_health_to_work == 20


@pytest.mark.parametrize(("toml", "field"), [
    ("[presence]\ninterval_s = 0\n", "presence.interval_s"),
    ("[presence]\ninterval_s = 5.0\nsilence_timeout_s = 6.0\n", "presence.silence_timeout_s"),
    ("[timeouts]\ndial_s = -1\n", "timeouts.dial_s"),
    ("[timeouts]\ndial_s = \"fast\"\n", "timeouts.dial_s"),
    ("[timeouts]\nwhatever_s = 1\n", "timeouts.whatever_s"),
    ("[work]\nmin_health_to_work = 101\n", "work.min_health_to_work"),
    ("[work]\nqueue_capacity = true\n", "work.queue_capacity"),
    ("[node]\nbootstrap = [\"/ip4/1.2.3.4/tcp/1\"]\n", "node.bootstrap[0]"),
    ("[node]\nlisten = [\"not an addr\"]\n", "node.listen[0]"),
    ("[control]\nmax_request_bytes = 10\n", "control.max_request_bytes"),
    ("top = 1\n", "top"),
    ("[metric]\nenabled = true\n", "metric"),
    ("[job]\nrounds = 3\n", "job"),
    ("[metrics]\nport = \"9464\"\n", "metrics.port"),
    ("[presence]\ninterval_s = nan\n", "presence.interval_s"),
])
def test_validation_names_the_bad_field(tmp_path: Path, toml: str, field: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert info.value.field == field


def test_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "missing.toml", env={})
    assert info.value.field == "--config"
    (tmp_path / "bad.toml").write_text("[node\n")
    with pytest.raises(ConfigError):
        load_config(tmp_path / "bad.toml", env={})


def test_precedence_flags_over_env_over_file_over_defaults(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(f'[node]\ndata_dir = "{tmp_path / "file"}"\nbootstrap = ["{BOOT}"]\n'
                    "[presence]\ninterval_s = 2.0\n"
                    "[storage]\nendpoint = \"http://x\"\n[owner]\ntick_s = 0.1\n")
    cfg = load_config(path, env={})
    assert cfg.node.data_dir == tmp_path / "file" and cfg.node.bootstrap == [BOOT]
    assert cfg.presence.interval_s == 2.0 and cfg.timeouts.dial_s == Config().timeouts.dial_s
    assert cfg.extra == {"storage": {"endpoint": "http://x"}, "owner": {"tick_s": 0.1}}
    other = BOOT.replace("4001", "4002")
    env = {"DISTRO_TRAIN_HOME": str(tmp_path / "env"), "BOOTSTRAP_ADDR": f"{other}, {BOOT}"}
    cfg = load_config(path, env=env)
    assert cfg.node.data_dir == tmp_path / "env" and cfg.node.bootstrap == [other, BOOT]
    cfg = load_config(path, env=env, overrides={"node.data_dir": tmp_path / "flag",
                                                "node.bootstrap": [BOOT], "node.listen": None})
    assert cfg.node.data_dir == tmp_path / "flag" and cfg.node.bootstrap == [BOOT]


# ----- health and presence ----------------------------------------------------------

def test_health_formula() -> None:
    assert health_score(0, 0, 0, 4) == 100
    assert health_score(100, 100, 4, 4) == 0
    assert health_score(50, 50, 2, 4) == pytest.approx(50)
    assert health_score(10, 20, 1, 4) == pytest.approx(90 * 0.4 + 80 * 0.4 + 75 * 0.2)
    assert health_score(-5, 200, 9, 4) == pytest.approx(100 * 0.4 + 0 + 0)
    assert health_score(0, 0, 0, 0) == 80  # no capacity counts as a full queue


@given(st.floats(-50, 150), st.floats(-50, 150), st.integers(0, 100), st.integers(0, 100))
def test_health_is_bounded(cpu: float, mem: float, qlen: int, qcap: int) -> None:
    h = health_score(cpu, mem, qlen, qcap)
    assert 0 <= h <= 100 and math.isfinite(h)


def status(**kw: Any) -> pb.Presence:
    base: dict[str, Any] = dict(version="0.1.0", cpu_count=2, mem_total=8, mem_available=4,
                                cpu_percent=10.0, mem_percent=50.0, queue_length=1,
                                queue_capacity=4, health=71.0, addrs=["/ip4/1.2.3.4/tcp/1"],
                                seq=3, accepting=True)
    base.update(kw)
    return pb.Presence(**base)


def test_presence_roundtrip_and_refusals() -> None:
    pair = create_new_key_pair()
    me = ID.from_pubkey(pair.public_key)
    wire = encode_presence(pair.private_key, status())
    sender, body = decode_presence(wire, me, ReplayGuard())
    assert sender == me and body == status()
    other = ID.from_pubkey(create_new_key_pair().public_key)
    with pytest.raises(EnvelopeError) as info:
        decode_presence(wire, other)
    assert info.value.reason == "wrong_sender"
    guard = ReplayGuard()
    decode_presence(wire, me, guard)
    with pytest.raises(EnvelopeError) as info:
        decode_presence(wire, me, guard)
    assert info.value.reason == "replay"
    for bad in (status(health=150.0), status(cpu_percent=float("nan")),
                status(addrs=["x"] * 17), status(version="v" * 500)):
        with pytest.raises(EnvelopeError) as info:
            decode_presence(encode_presence(pair.private_key, bad), me)
        assert info.value.reason == "bad_body"
    with pytest.raises(EnvelopeError) as info:
        decode_presence(b"\x01garbage", me)
    assert info.value.reason == "malformed"


def test_peer_table_joins_and_expires() -> None:
    table = PeerTable(silence_timeout_s=5)
    p1, p2 = (ID.from_pubkey(create_new_key_pair().public_key) for _ in range(2))
    assert table.observe(p1, status(seq=1), now=0) is True
    assert table.observe(p1, status(seq=2), now=3) is False
    assert table.observe(p2, status(seq=1), now=4) is True
    assert table.expire(now=7.9) == []
    assert table.expire(now=8.1) == [p1]  # last heard at 3, silent > 5 s
    assert [e.peer_id for e in table.entries()] == [p2]


# ----- JSON-RPC ---------------------------------------------------------------------

async def answer(routes: Routes, obj: Any) -> dict[str, Any]:
    raw = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
    out = await dispatch(routes, raw)
    assert out is not None and out.endswith(b"\n")
    result: dict[str, Any] = json.loads(out)
    return result


async def test_dispatch_codes() -> None:
    routes = Routes()

    async def add(params: dict[str, Any]) -> int:
        if params["a"] < 0:
            raise InvalidParams("a", "negative")
        return int(params["a"] + params.get("b", 0))

    async def broken(params: dict[str, Any]) -> None:
        raise RuntimeError("bug")

    routes.add("m.add", add, required={"a": int}, optional={"b": int})
    routes.add("m.broken", broken)
    with pytest.raises(ValueError):
        routes.add("m.add", add)
    req = {"jsonrpc": "2.0", "id": 5, "method": "m.add", "params": {"a": 2, "b": 3}}
    assert await answer(routes, req) == {"jsonrpc": "2.0", "id": 5, "result": 5}
    assert (await answer(routes, b"{"))["error"]["code"] == -32700
    assert (await answer(routes, [req]))["error"]["code"] == -32600
    assert (await answer(routes, {**req, "method": "x"}))["error"]["code"] == -32601
    for params in ({}, {"a": "1"}, {"a": True}, {"a": 1, "c": 2}, {"a": -1}, [1]):
        resp = await answer(routes, {**req, "params": params})
        assert resp["error"]["code"] == -32602, params
    resp = await answer(routes, {**req, "method": "m.broken", "params": {}})
    assert resp["error"]["code"] == -32603 and resp["id"] == 5
    notification = {k: v for k, v in req.items() if k != "id"}
    assert await dispatch(routes, json.dumps(notification).encode()) is None


# ----- package tables ([owner], [trainer], [reputation]) ---------------------------

@dataclasses.dataclass(frozen=True)
class _WithNested:
    tick_s: float = 0.2
    reputation: ReputationConfig = dataclasses.field(default_factory=ReputationConfig)


@pytest.mark.parametrize(("section", "cls", "table", "field"), [
    ("trainer", TrainerConfig, {"slotz": 2}, "trainer.slotz"),
    ("trainer", TrainerConfig, {"slots": "2"}, "trainer.slots"),
    ("trainer", TrainerConfig, {"slots": 1.5}, "trainer.slots"),
    ("trainer", TrainerConfig, {"slots": True}, "trainer.slots"),
    ("trainer", TrainerConfig, {"request_timeout_s": -1}, "trainer.request_timeout_s"),
    ("owner", _WithNested, {"reputation": {"accepted": 1.0}}, "owner.reputation"),
    ("reputation", ReputationConfig, {"floor": "low"}, "reputation.floor"),
])
def test_package_tables_name_the_bad_field(section: str, cls: type, table: dict[str, Any],
                                           field: str) -> None:
    with pytest.raises(ConfigError) as info:
        settings_from_table(cls, section, table)
    assert info.value.field == field


def test_package_tables_keep_types_and_allow_negative_defaults() -> None:
    owner = settings_from_table(_WithNested, "owner", {"tick_s": 1})
    assert owner.tick_s == 1.0 and isinstance(owner.tick_s, float)
    assert owner.reputation == ReputationConfig()
    trainer = settings_from_table(TrainerConfig, "trainer", {"slots": 3})
    assert trainer.slots == 3 and trainer.known_jobs == TrainerConfig().known_jobs
    rep = settings_from_table(ReputationConfig, "reputation", {"outvoted": -5})
    assert rep.outvoted == -5.0 and rep.accepted == ReputationConfig().accepted


def test_evicting_an_expired_peer_that_has_a_signed_record_does_not_raise() -> None:
    """py-libp2p's clear_addrs raises for such a peer; uncaught, it ended a daemon."""
    from types import SimpleNamespace

    from libp2p.peer.peerstore import PeerStoreError
    from multiaddr import Multiaddr

    from p2pnode.discovery import Discovery
    from p2pnode.host import make_host

    host = make_host(create_new_key_pair(), ["/ip4/127.0.0.1/tcp/0"])
    store = host.get_peerstore()
    peer = ID.from_pubkey(create_new_key_pair().public_key)

    def expired_with_record() -> None:
        store.add_addrs(peer, [Multiaddr("/ip4/127.0.0.1/tcp/1")], ttl=1)
        store.peer_data_map[peer].last_identified -= 10
        store.peer_record_map[peer] = object()  # type: ignore[assignment]  # its record

    expired_with_record()
    with pytest.raises(PeerStoreError):  # the library's own behaviour, the trap
        store.clear_addrs(peer)
    expired_with_record()
    removed: list[ID] = []
    dht = SimpleNamespace(routing_table=SimpleNamespace(remove_peer=removed.append))
    Discovery(host, dht, Config()).evict(peer)  # type: ignore[arg-type]
    assert removed == [peer] and store.peer_data_map[peer].get_addrs() == []
