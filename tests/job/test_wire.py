"""Signed envelopes, sealing and job specs: refusals with reasons, and fuzzed decoders."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.peer.id import ID

from protocols.envelope import MAX_MESSAGE_BYTES, ReplayGuard, open_message, seal_message
from protocols.errors import EnvelopeError, SealError
from protocols.job.spec import JobSpec, SpecError, from_mapping, loads
from protocols.pb import distro_pb2 as pb
from protocols.seal import seal, unseal

A = create_new_key_pair()
B = create_new_key_pair()


def reason(fn, *args, **kw) -> str:  # type: ignore[no-untyped-def]
    with pytest.raises(EnvelopeError) as info:
        fn(*args, **kw)
    return info.value.reason


def test_round_trip_carries_job_round_and_sender() -> None:
    wire = seal_message(
        A.private_key, "job.update", pb.UpdateAnnounce(sha256="ab", samples=3), job_id="j1", round=4
    )
    msg = open_message(wire, expected_kinds=frozenset({"job.update"}))
    assert msg.sender == ID.from_pubkey(A.public_key)
    assert (msg.kind, msg.job_id, msg.round) == ("job.update", "j1", 4)
    assert isinstance(msg.body, pb.UpdateAnnounce) and msg.body.samples == 3


def test_refusals_each_have_their_reason() -> None:
    wire = seal_message(A.private_key, "presence", pb.Presence(health=50))
    guard = ReplayGuard()
    open_message(wire, replay=guard)
    assert reason(open_message, wire, replay=guard) == "replay"
    flipped = bytearray(wire)
    flipped[-1] ^= 1
    assert reason(open_message, bytes(flipped)) == "bad_signature"
    assert (
        reason(open_message, wire, expected_sender=ID.from_pubkey(B.public_key)) == "wrong_sender"
    )
    assert reason(open_message, wire, expected_kinds=frozenset({"job.offer"})) == "kind"
    assert reason(open_message, b"\xff" * 40) == "malformed"
    assert reason(open_message, b"\x00" * (MAX_MESSAGE_BYTES + 1)) == "oversize"
    old = seal_message(A.private_key, "presence", pb.Presence(), now_ms=1_000)
    assert reason(open_message, old, replay=ReplayGuard()) == "stale"
    with pytest.raises(EnvelopeError):
        seal_message(A.private_key, "presence", pb.Offer())


def test_a_message_signed_by_one_key_claiming_another_sender_is_refused() -> None:
    wire = seal_message(A.private_key, "presence", pb.Presence())
    signed = pb.Signed.FromString(wire)
    env = pb.Envelope.FromString(signed.envelope)
    env.sender = ID.from_pubkey(B.public_key).to_bytes()
    forged = pb.Signed(envelope=env.SerializeToString(), signature=signed.signature)
    assert reason(open_message, forged.SerializeToString()) == "wrong_sender"


def test_replay_guard_memory_is_bounded() -> None:
    guard = ReplayGuard(window_s=60, capacity=100)
    for _ in range(1000):
        open_message(seal_message(A.private_key, "presence", pb.Presence()), replay=guard)
    assert len(guard._seen) <= 100


def test_sealed_payload_opens_only_for_its_recipient_and_context() -> None:
    ct = seal(b"https://store/obj?sig", A.public_key, purpose="task", job_id="j", round=2)
    assert (
        unseal(ct, A.private_key, purpose="task", job_id="j", round=2) == b"https://store/obj?sig"
    )
    for key, kw in [(B.private_key, {"round": 2}), (A.private_key, {"round": 3})]:
        with pytest.raises(SealError):
            unseal(ct, key, purpose="task", job_id="j", **kw)
    with pytest.raises(SealError):
        unseal(ct[:-1] + bytes([ct[-1] ^ 1]), A.private_key, purpose="task", job_id="j", round=2)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2048))
def test_fuzz_open_message_never_crashes(data: bytes) -> None:
    try:
        open_message(data, replay=ReplayGuard())
    except EnvelopeError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=512))
def test_fuzz_unseal_never_crashes(data: bytes) -> None:
    with pytest.raises(SealError):
        unseal(data, A.private_key, purpose="task", job_id="j", round=1)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=500) | st.binary(max_size=500))
def test_fuzz_job_spec_text_never_crashes(text: str | bytes) -> None:
    try:
        assert isinstance(loads(text), JobSpec)
    except SpecError:
        pass


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(list(JobSpec.__dataclass_fields__) + ["junk"]),
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats()
        | st.text(max_size=8)
        | st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
        max_size=6,
    )
)
def test_fuzz_job_spec_mapping_never_crashes(data: dict[str, object]) -> None:
    try:
        from_mapping(data)
    except SpecError as exc:
        assert exc.field


def test_spec_errors_name_the_field() -> None:
    with pytest.raises(SpecError) as info:
        loads('[job]\nrounds = 3\ntrainers = "many"\n')
    assert info.value.field == "trainers"
    assert loads('{"rounds": 2, "dataset": "digits"}').rounds == 2
