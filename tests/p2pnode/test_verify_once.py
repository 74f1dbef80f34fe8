"""A gossip message is opened twice per hop (validator, then handler): one verification."""

from __future__ import annotations

import pytest
from libp2p.crypto.ed25519 import create_new_key_pair

from protocols import envelope
from protocols.envelope import VerifiedCache, open_message, seal_message
from protocols.errors import EnvelopeError
from protocols.pb import distro_pb2 as pb


@pytest.fixture
def cache(monkeypatch: pytest.MonkeyPatch) -> VerifiedCache:
    fresh = VerifiedCache(capacity=2)
    monkeypatch.setattr(envelope, "VERIFIED", fresh)
    return fresh


def presence(key: object) -> bytes:
    return seal_message(key, "presence", pb.Presence(queue_length=1))  # type: ignore[arg-type]


def test_the_same_bytes_verify_once(cache: VerifiedCache) -> None:
    wire = presence(create_new_key_pair().private_key)
    first = open_message(wire)
    second = open_message(wire)
    assert first == second
    assert (cache.verifications, cache.hits) == (1, 1)


def test_a_forged_signature_is_still_refused_after_the_genuine_one_verified(
    cache: VerifiedCache,
) -> None:
    wire = presence(create_new_key_pair().private_key)
    open_message(wire)
    signed = pb.Signed.FromString(wire)
    forged = pb.Signed(envelope=signed.envelope,
                       signature=bytes(64 - len(b"x")) + b"x").SerializeToString()
    with pytest.raises(EnvelopeError) as err:
        open_message(forged)
    assert err.value.reason == "bad_signature"
    assert cache.verifications == 2


def test_the_cache_is_bounded(cache: VerifiedCache) -> None:
    key = create_new_key_pair().private_key
    wires = [presence(key) for _ in range(3)]
    for wire in wires:
        open_message(wire)
    open_message(wires[0])
    assert cache.verifications == 4
