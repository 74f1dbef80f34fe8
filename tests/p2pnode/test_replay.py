"""The replay guard and the envelope's check order under attack (pure, injected clock)."""

from __future__ import annotations

import os
from unittest import mock

import pytest
from libp2p.crypto.ed25519 import Ed25519PublicKey
from libp2p.crypto.ed25519 import create_new_key_pair as ed25519_pair
from libp2p.crypto.rsa import create_new_key_pair as rsa_pair
from libp2p.peer.id import ID

from protocols.envelope import ReplayGuard, open_message, seal_message
from protocols.errors import EnvelopeError
from protocols.pb import distro_pb2 as pb

NOW = 1_800_000_000_000
HONEST = ID.from_pubkey(ed25519_pair().public_key).to_bytes()
ATTACKER = ID.from_pubkey(ed25519_pair().public_key).to_bytes()


class Clock:
    def __init__(self) -> None:
        self.ms = NOW

    def __call__(self) -> int:
        return self.ms


def refused(guard: ReplayGuard, sender: bytes, nonce: bytes, ts: int) -> str:
    try:
        guard.check(sender, nonce, ts)
    except EnvelopeError as exc:
        assert exc.sender == ""
        return exc.reason
    return ""


def test_future_skew_is_a_few_seconds_and_configurable() -> None:
    clock = Clock()
    guard = ReplayGuard(clock=clock)
    assert refused(guard, HONEST, os.urandom(16), NOW + 4_000) == ""
    assert refused(guard, HONEST, os.urandom(16), NOW + 6_000) == "stale"
    assert refused(guard, HONEST, os.urandom(16), NOW - 121_000) == "stale"
    wide = ReplayGuard(window_s=10, future_skew_s=30, clock=clock)
    assert refused(wide, HONEST, os.urandom(16), NOW + 29_000) == ""
    assert refused(wide, HONEST, os.urandom(16), NOW - 11_000) == "stale"


@pytest.mark.parametrize("sybil", [False, True], ids=["one_attacker", "100k_identities"])
def test_honest_traffic_flows_during_a_flood_of_100k_future_dated_envelopes(sybil: bool) -> None:
    clock = Clock()
    guard = ReplayGuard(capacity=20_000, per_sender=1_000, clock=clock)
    honest_sent = honest_refused = 0
    honest_nonces: list[tuple[bytes, int]] = []
    for i in range(100_000):
        attacker = os.urandom(38) if sybil else ATTACKER
        refused(guard, attacker, os.urandom(16), clock.ms + 5_000)
        if i % 100 == 0:  # the honest peer: one fresh message per 100 attacker messages
            nonce = os.urandom(16)
            honest_sent += 1
            honest_refused += refused(guard, HONEST, nonce, clock.ms) != ""
            honest_nonces.append((nonce, clock.ms))
        if i % 50 == 0:
            clock.ms += 1  # the flood lasts 2,000 ms of the injected clock
        assert len(guard) <= 20_000
    assert honest_refused == 0, f"{honest_refused}/{honest_sent} honest messages refused"
    assert len(guard._heap) <= 2 * 20_000 + 64
    assert len(guard._floors) <= 80_000
    # Nothing honest can be replayed, whether it is still remembered or was forgotten.
    for nonce, ts in honest_nonces:
        assert refused(guard, HONEST, nonce, ts) in ("replay", "stale")


def test_an_evicted_entry_cannot_be_replayed_and_the_floor_stays_behind_now() -> None:
    clock = Clock()
    guard = ReplayGuard(capacity=10, per_sender=10, max_floor_lag_s=30, clock=clock)
    first = os.urandom(16)
    guard.check(HONEST, first, NOW - 1_000)
    for _ in range(30):
        guard.check(os.urandom(38), os.urandom(16), NOW + 5_000)
    assert refused(guard, HONEST, first, NOW - 1_000) == "stale"
    # Past max_floors identities the global floor takes over, never closer than the lag.
    for _ in range(500):
        guard.check(os.urandom(38), os.urandom(16), NOW + 5_000)
    assert len(guard._floors) <= 40
    assert guard._floor_ms <= NOW - 30_000
    assert refused(guard, HONEST, os.urandom(16), NOW) == ""


def test_entries_expire_with_the_window() -> None:
    clock = Clock()
    guard = ReplayGuard(window_s=10, clock=clock)
    for _ in range(100):
        guard.check(ATTACKER, os.urandom(16), NOW + 5_000)
    clock.ms += 16_000
    guard.check(HONEST, os.urandom(16), clock.ms)
    assert len(guard) == 1
    assert not guard._floors


# ----- the envelope: Ed25519 only, cheap checks first, blame only on a valid signature --


A = ed25519_pair()
B = ed25519_pair()


def reason_and_sender(data: bytes, **kw: object) -> tuple[str, str]:
    try:
        open_message(data, **kw)  # type: ignore[arg-type]
    except EnvelopeError as exc:
        return exc.reason, exc.sender
    return "", ""


def test_a_bad_signature_carrying_an_honest_key_names_nobody() -> None:
    wire = seal_message(A.private_key, "presence", pb.Presence(health=50))
    signed = pb.Signed.FromString(wire)
    forged = pb.Signed(envelope=signed.envelope, signature=bytes(64)).SerializeToString()
    assert reason_and_sender(forged) == ("bad_signature", "")
    # the key and sender of A, the signature of B over the same bytes
    env = pb.Envelope.FromString(signed.envelope)
    env.nonce = os.urandom(16)
    env_bytes = env.SerializeToString()
    sig = B.private_key.sign(b"distro-train/v1\x00" + env_bytes)
    framed = pb.Signed(envelope=env_bytes, signature=sig).SerializeToString()
    assert reason_and_sender(framed) == ("bad_signature", "")


def test_a_replayed_genuine_message_names_nobody() -> None:
    wire = seal_message(A.private_key, "presence", pb.Presence(health=50))
    guard = ReplayGuard()
    open_message(wire, replay=guard)
    assert reason_and_sender(wire, replay=guard) == ("replay", "")


def test_a_signed_bad_body_names_its_signer() -> None:
    wire = seal_message(A.private_key, "presence", pb.Presence(health=50))
    signed = pb.Signed.FromString(wire)
    env = pb.Envelope.FromString(signed.envelope)
    env.body = b"\xff\xff\xff"
    env_bytes = env.SerializeToString()
    sig = A.private_key.sign(b"distro-train/v1\x00" + env_bytes)
    data = pb.Signed(envelope=env_bytes, signature=sig).SerializeToString()
    assert reason_and_sender(data) == ("bad_body", ID.from_pubkey(A.public_key).to_base58())


def test_rsa_keys_are_refused_before_any_signature_work() -> None:
    rsa = rsa_pair(1024)
    with pytest.raises(EnvelopeError) as info:
        seal_message(rsa.private_key, "presence", pb.Presence())
    assert info.value.reason == "key_type"
    wire = seal_message(A.private_key, "presence", pb.Presence())
    signed = pb.Signed.FromString(wire)
    env = pb.Envelope.FromString(signed.envelope)
    env.public_key = rsa.public_key.serialize()
    env.sender = ID.from_pubkey(rsa.public_key).to_bytes()
    env_bytes = env.SerializeToString()
    signature = rsa.private_key.sign(env_bytes)
    data = pb.Signed(envelope=env_bytes, signature=signature).SerializeToString()
    with mock.patch.object(Ed25519PublicKey, "verify", side_effect=AssertionError("verified")):
        assert reason_and_sender(data) == ("key_type", "")


@pytest.mark.parametrize("what", ["kind", "stale", "wrong_sender"])
def test_cheap_refusals_come_before_the_signature_check(what: str) -> None:
    now = NOW
    ts = now - 600_000 if what == "stale" else now
    wire = seal_message(A.private_key, "presence", pb.Presence(), now_ms=ts)
    kw: dict[str, object] = {"replay": ReplayGuard(clock=lambda: now)}
    if what == "kind":
        kw["expected_kinds"] = frozenset({"job.offer"})
    if what == "wrong_sender":
        kw["expected_sender"] = ID.from_pubkey(B.public_key)
    with mock.patch.object(Ed25519PublicKey, "verify", side_effect=AssertionError("verified")):
        assert reason_and_sender(wire, **kw) == (what, "")


def test_the_window_only_check_remembers_nothing() -> None:
    wire = seal_message(A.private_key, "presence", pb.Presence())
    guard = ReplayGuard()
    open_message(wire, window=guard)
    open_message(wire, window=guard)
    assert len(guard) == 0
    open_message(wire, replay=guard)
    assert reason_and_sender(wire, replay=guard) == ("replay", "")
