"""Gossip validators and the per-peer rate limit (pure: no sockets)."""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.peer.id import ID
from libp2p.pubsub.pb import rpc_pb2

from p2pnode.host import set_validator
from p2pnode.peergate import PeerGate
from protocols.envelope import ReplayGuard, open_message, seal_message
from protocols.gossip import Verdict, default_validator, kinds_for_topic
from protocols.job import JOBS_TOPIC, job_topic
from protocols.pb import distro_pb2 as pb
from protocols.presence import TOPIC as PRESENCE_TOPIC

A = create_new_key_pair()
B = create_new_key_pair()
A_ID = ID.from_pubkey(A.public_key)
B_ID = ID.from_pubkey(B.public_key)
C_ID = ID.from_pubkey(create_new_key_pair().public_key)


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_topics_carry_only_their_kinds() -> None:
    assert kinds_for_topic(PRESENCE_TOPIC) == {"presence"}
    assert "job.announce" in (kinds_for_topic(JOBS_TOPIC) or ())
    assert "job.update" in (kinds_for_topic(job_topic("j1")) or ())
    assert kinds_for_topic("/distro-train/debug/x") is None


def test_the_presence_validator_drops_junk_and_republished_messages_and_remembers_nothing() -> None:
    guard = ReplayGuard()
    validate = default_validator(PRESENCE_TOPIC, guard)
    assert validate is not None
    wire = seal_message(A.private_key, "presence", pb.Presence(health=50))
    assert validate(wire, A_ID) is Verdict.ACCEPT
    assert validate(wire, A_ID) is Verdict.ACCEPT  # a validator must not consume the nonce ...
    open_message(wire, replay=guard)  # ... the handler still accepts the message
    assert validate(wire, A_ID) is Verdict.ACCEPT  # replays are the handler's to refuse
    assert validate(wire, B_ID) is Verdict.REJECT  # republished by another peer
    assert validate(os.urandom(200), A_ID) is Verdict.REJECT
    offer = seal_message(A.private_key, "job.offer", pb.Offer())
    assert validate(offer, A_ID) is Verdict.REJECT  # wrong kind for the topic
    future = seal_message(A.private_key, "presence", pb.Presence(),
                          now_ms=guard.clock() + 60_000)
    assert validate(future, A_ID) is Verdict.IGNORE  # late or early: time, not forgery
    late = seal_message(A.private_key, "presence", pb.Presence(),
                        now_ms=guard.clock() - 121_000)
    assert validate(late, A_ID) is Verdict.IGNORE
    forged_late = pb.Signed.FromString(late)
    forged_late.signature = bytes(64)
    assert validate(forged_late.SerializeToString(), A_ID) is Verdict.REJECT  # late and forged
    bad_sig = pb.Signed.FromString(wire)
    bad_sig.signature = bytes(64)
    assert validate(bad_sig.SerializeToString(), A_ID) is Verdict.REJECT


class OnePubsub:
    """What set_validator touches of py-libp2p's Pubsub: the host's id and the hook."""

    def __init__(self) -> None:
        self.host = self
        self.validators: dict[str, Callable[[ID, rpc_pb2.Message], bool]] = {}

    def get_id(self) -> ID:
        return C_ID  # the receiving daemon: neither the author A nor the forwarder B

    def set_topic_validator(self, topic: str, fn: Callable[[ID, rpc_pb2.Message], bool],
                            is_async: bool) -> None:
        self.validators[topic] = fn


def test_late_messages_never_get_an_honest_forwarder_banned_but_forgeries_do() -> None:
    """A slow network delivers a backlog of messages past the window; relaying them is
    honest and must not be charged as invalid. Forged ones still are."""
    clock = Clock()
    gate = PeerGate(rate=50, burst=500, invalid_cost=10, max_strikes=200, ban_s=60, clock=clock)
    pubsub = OnePubsub()
    guard = ReplayGuard()
    validator = default_validator(PRESENCE_TOPIC, guard)
    assert validator is not None
    set_validator(pubsub, PRESENCE_TOPIC, validator, gate)
    validate = pubsub.validators[PRESENCE_TOPIC]

    def relay(peer: ID, wire: bytes) -> bool:
        clock.t += 0.05  # 20 messages a second: well under the rate limit
        if not gate.admit(peer):
            assert not gate.should_ban(peer), "banned"
            return False
        return validate(peer, rpc_pb2.Message(data=wire, from_id=A_ID.to_bytes()))

    stale = [seal_message(A.private_key, "presence", pb.Presence(),
                          now_ms=guard.clock() - 130_000) for _ in range(600)]
    assert not any(relay(B_ID, w) for w in stale)
    assert gate.ignored == 600 and gate.dropped == 0 and gate.bans == 0
    fresh = seal_message(A.private_key, "presence", pb.Presence())
    assert relay(B_ID, fresh)  # still admitted in full

    forged = pb.Signed.FromString(fresh)
    forged.signature = bytes(64)
    with pytest.raises(AssertionError, match="banned"):
        for _ in range(600):
            relay(A_ID, forged.SerializeToString())
    assert gate.bans == 1


def test_a_flooding_peer_is_rate_limited_then_banned_and_others_are_not() -> None:
    clock = Clock()
    gate = PeerGate(rate=50, burst=100, invalid_cost=10, max_strikes=200, ban_s=60, clock=clock)
    admitted = banned_after = 0
    for i in range(10_000):
        if gate.admit("flooder"):
            admitted += 1
        elif gate.should_ban("flooder"):
            banned_after = i
            break
    assert admitted == 100 and banned_after == 299  # 100 admitted, 200 strikes
    assert gate.is_banned("flooder")
    assert all(gate.admit("honest") for _ in range(50))
    clock.t += 61
    assert gate.expired_bans() == ["flooder"]
    assert gate.admit("flooder")


def test_honest_rates_are_never_limited() -> None:
    clock = Clock()
    gate = PeerGate(rate=50, burst=500, invalid_cost=10, max_strikes=200, ban_s=60, clock=clock)
    for _ in range(10_000):
        clock.t += 0.05  # 20 messages/s, with the odd invalid one relayed
        assert gate.admit("relay")
    gate.charge_invalid("relay")
    assert gate.admit("relay") and not gate.should_ban("relay")


def test_invalid_messages_get_a_peer_banned_sooner() -> None:
    clock = Clock()
    gate = PeerGate(rate=50, burst=100, invalid_cost=10, max_strikes=20, ban_s=60, clock=clock)
    sent = 0
    while not gate.should_ban("junk"):
        if gate.admit("junk"):
            gate.charge_invalid("junk")
        sent += 1
        assert sent < 1000
    assert sent < 60
