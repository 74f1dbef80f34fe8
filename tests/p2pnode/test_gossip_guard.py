"""Gossip validators and the per-peer rate limit (pure: no sockets)."""

from __future__ import annotations

import os

from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.peer.id import ID

from p2pnode.peergate import PeerGate
from protocols.envelope import ReplayGuard, open_message, seal_message
from protocols.gossip import default_validator, kinds_for_topic
from protocols.job import JOBS_TOPIC, job_topic
from protocols.pb import distro_pb2 as pb
from protocols.presence import TOPIC as PRESENCE_TOPIC

A = create_new_key_pair()
B = create_new_key_pair()
A_ID = ID.from_pubkey(A.public_key)
B_ID = ID.from_pubkey(B.public_key)


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
    assert validate(wire, A_ID)
    assert validate(wire, A_ID)  # a validator must not consume the nonce ...
    open_message(wire, replay=guard)  # ... the handler still accepts the message
    assert not validate(wire, B_ID)  # republished by another peer
    assert not validate(os.urandom(200), A_ID)
    offer = seal_message(A.private_key, "job.offer", pb.Offer())
    assert not validate(offer, A_ID)  # wrong kind for the topic
    future = seal_message(A.private_key, "presence", pb.Presence(),
                          now_ms=guard.clock() + 60_000)
    assert not validate(future, A_ID)
    bad_sig = pb.Signed.FromString(wire)
    bad_sig.signature = bytes(64)
    assert not validate(bad_sig.SerializeToString(), A_ID)


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
