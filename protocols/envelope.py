"""Signed envelopes: every control message is signed by its sender and checked on receipt.

Gossipsub's strict signing covers one hop of one message; messages that are
forwarded, stored or replayed later need their own signature. ``seal_message``
wraps a protobuf body in an ``Envelope`` (kind, sender, job, round, timestamp,
nonce), signs it with the sender's libp2p Ed25519 key, and ``open_message``
checks it cheapest first (size, decoding, Ed25519 key, sender, kind, time window and
replay pre-check) before it spends a signature verification, then decodes the body
and remembers the nonce. Only Ed25519 identities are accepted: other key types cost
more to verify and are never what a distro-train daemon signs with.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections import OrderedDict
from dataclasses import dataclass

from google.protobuf.message import DecodeError, Message
from libp2p.crypto.ed25519 import Ed25519PublicKey
from libp2p.crypto.keys import PrivateKey, PublicKey
from libp2p.peer.id import ID

from protocols.errors import EnvelopeError
from protocols.pb import distro_pb2 as pb
from protocols.replay import ReplayGuard

__all__ = ["BODY_TYPES", "MAX_MESSAGE_BYTES", "Opened", "ReplayGuard", "open_message",
           "seal_message"]

DOMAIN = b"distro-train/v1\x00"
MAX_MESSAGE_BYTES = 64 * 1024
"""No control message may be larger than this; larger bytes are refused undecoded."""
ED25519_KEY_PREFIX = b"\x08\x01\x12\x20"
"""A libp2p ``PublicKey`` protobuf: type Ed25519 (1), then 32 bytes of key data."""
IDENTITY_MULTIHASH_PREFIX = b"\x00\x24"
"""An Ed25519 peer id is the identity multihash (code 0, length 36) of the key."""
ED25519_SIGNATURE_BYTES = 64
VERIFIED_CACHE_ENTRIES = 4096
"""How many recently verified (envelope, signature) pairs :func:`open_message` remembers."""


class VerifiedCache:
    """Digests of (signed envelope, signature) pairs whose signature verified: bounded LRU.

    A gossip message is opened twice on each hop, by the topic validator before it is
    relayed and by the handler after: the second open skips the Ed25519 verification.
    The digest covers the signed bytes and the signature (the key is inside the signed
    bytes), so only the very same bytes that verified before can hit; every cheap check
    (sender, kind, time window, replay) still runs on each open.
    """

    def __init__(self, capacity: int = VERIFIED_CACHE_ENTRIES) -> None:
        self.capacity = capacity
        self.hits = 0
        self.verifications = 0
        self._seen: OrderedDict[bytes, None] = OrderedDict()

    @staticmethod
    def digest(signed_envelope: bytes, signature: bytes) -> bytes:
        """The cache key of one signed envelope."""
        return hashlib.sha256(signature + signed_envelope).digest()

    def contains(self, key: bytes) -> bool:
        """Whether ``key`` verified recently (refreshes it)."""
        if key in self._seen:
            self._seen.move_to_end(key)
            self.hits += 1
            return True
        return False

    def add(self, key: bytes) -> None:
        """Remember that ``key`` verified."""
        self._seen[key] = None
        if len(self._seen) > self.capacity:
            self._seen.popitem(last=False)


VERIFIED = VerifiedCache()
"""The process-wide cache :func:`open_message` uses."""

BODY_TYPES: dict[str, type[Message]] = {
    "presence": pb.Presence,
    "job.announce": pb.JobAnnounce,
    "job.offer": pb.Offer,
    "job.assign": pb.Assign,
    "job.ack": pb.Ack,
    "job.update": pb.UpdateAnnounce,
    "job.round": pb.RoundResult,
    "job.cancel": pb.JobCancel,
    "job.receipts": pb.Receipts,
}


@dataclass(frozen=True)
class Opened:
    """A verified message: who sent it, what it is about, and its decoded body."""

    sender: ID
    public_key: PublicKey
    kind: str
    job_id: str
    round: int
    timestamp_ms: int
    nonce: bytes
    body: Message


def seal_message(
    key: PrivateKey,
    kind: str,
    body: Message,
    *,
    job_id: str = "",
    round: int = 0,
    now_ms: int | None = None,
) -> bytes:
    """Return the signed wire bytes of ``body`` as a message of ``kind``.

    Raises:
        EnvelopeError: ``kind`` is unknown or does not match the body type, ``key`` is
            not Ed25519, or the result would exceed ``MAX_MESSAGE_BYTES``.
    """
    expected = BODY_TYPES.get(kind)
    if expected is None or not isinstance(body, expected):
        raise EnvelopeError("kind", f"{kind!r} does not match {type(body).__name__}")
    public = key.get_public_key()
    if not public.serialize().startswith(ED25519_KEY_PREFIX):
        raise EnvelopeError("key_type", "only Ed25519 identities can sign")
    env = pb.Envelope(
        kind=kind,
        sender=ID.from_pubkey(public).to_bytes(),
        public_key=public.serialize(),
        job_id=job_id,
        round=round,
        timestamp_ms=int(time.time() * 1000) if now_ms is None else now_ms,
        nonce=os.urandom(16),
        body=body.SerializeToString(),
    )
    env_bytes = env.SerializeToString()
    data = pb.Signed(envelope=env_bytes, signature=key.sign(DOMAIN + env_bytes))
    wire = data.SerializeToString()
    if len(wire) > MAX_MESSAGE_BYTES:
        raise EnvelopeError("oversize", f"{len(wire)} bytes > {MAX_MESSAGE_BYTES}")
    return wire


def open_message(
    data: bytes,
    *,
    expected_kinds: frozenset[str] | None = None,
    expected_sender: ID | None = None,
    replay: ReplayGuard | None = None,
    window: ReplayGuard | None = None,
    now_ms: int | None = None,
) -> Opened:
    """Verify and decode wire bytes made by ``seal_message``, cheapest check first.

    Order: size, decode, key type and length (Ed25519 only), sender matches key,
    expected sender, kind, timestamp window and replay pre-check, signature, body
    decode, and only then is the nonce remembered. Nothing costs a signature check
    before every cheap filter passed, and bytes that verified recently are not verified
    again (:class:`VerifiedCache`: the gossip validator and the handler open each
    message on every hop).

    Args:
        data: Untrusted bytes from the network.
        expected_kinds: When given, any other kind is refused.
        expected_sender: When given (e.g. the stream's remote peer, or the gossip
            message's ``from``), a different signer is refused as ``wrong_sender``.
        replay: When given, a (sender, nonce) seen before, or a timestamp outside
            its window or below its floors, is refused, and the nonce is remembered.
        window: When given (and ``replay`` is not), only its time window is checked
            and nothing is remembered: for gossip validators, which must leave the
            nonce to the handler.
        now_ms: Clock override for tests.

    Raises:
        EnvelopeError: With a reason code; nothing unverified is returned. Its
            ``sender`` is set only when the signature verified (``bad_body``): any
            earlier refusal names nobody, since anyone can copy a public key.
    """
    env, public = _precheck(data, expected_kinds, expected_sender, replay, window, now_ms)
    key = VerifiedCache.digest(env.signed_envelope, env.signature)
    if not VERIFIED.contains(key):
        VERIFIED.verifications += 1
        try:
            valid = public.verify(DOMAIN + env.signed_envelope, env.signature)
        except Exception:  # noqa: BLE001 - a malformed signature is a bad signature
            valid = False
        if not valid:
            raise EnvelopeError("bad_signature")
        VERIFIED.add(key)
    sender = ID(env.sender)
    try:
        body = BODY_TYPES[env.kind].FromString(env.body)
    except DecodeError as exc:
        raise EnvelopeError("bad_body", str(exc), sender.to_base58()) from None
    if replay is not None:
        replay.check(env.sender, env.nonce, env.timestamp_ms, now_ms)
    return Opened(
        sender=sender, public_key=public, kind=env.kind, job_id=env.job_id, round=env.round,
        timestamp_ms=env.timestamp_ms, nonce=env.nonce, body=body,
    )


class _Unverified:
    """The decoded envelope fields plus the signed bytes, before the signature check."""

    __slots__ = ("body", "job_id", "kind", "nonce", "round", "sender", "signature",
                 "signed_envelope", "timestamp_ms")

    def __init__(self, signed: pb.Signed, env: pb.Envelope) -> None:
        self.signed_envelope = signed.envelope
        self.signature = signed.signature
        self.kind = env.kind
        self.sender = env.sender
        self.job_id = env.job_id
        self.round = env.round
        self.timestamp_ms = env.timestamp_ms
        self.nonce = env.nonce
        self.body = env.body


def _precheck(
    data: bytes,
    expected_kinds: frozenset[str] | None,
    expected_sender: ID | None,
    replay: ReplayGuard | None,
    window: ReplayGuard | None,
    now_ms: int | None,
) -> tuple[_Unverified, PublicKey]:
    """Every check that costs no signature work; raises EnvelopeError (sender unset)."""
    if len(data) > MAX_MESSAGE_BYTES:
        raise EnvelopeError("oversize", f"{len(data)} bytes > {MAX_MESSAGE_BYTES}")
    try:
        signed = pb.Signed.FromString(data)
        env = pb.Envelope.FromString(signed.envelope)
    except DecodeError as exc:
        raise EnvelopeError("malformed", str(exc)) from None
    key = env.public_key
    if len(key) != len(ED25519_KEY_PREFIX) + 32 or not key.startswith(ED25519_KEY_PREFIX):
        raise EnvelopeError("key_type", "only Ed25519 identities are accepted")
    if env.sender != IDENTITY_MULTIHASH_PREFIX + key:
        raise EnvelopeError("wrong_sender", "key does not match sender")
    if expected_sender is not None and env.sender != expected_sender.to_bytes():
        raise EnvelopeError("wrong_sender", f"expected {expected_sender.to_base58()}")
    if env.kind not in BODY_TYPES or (expected_kinds is not None
                                      and env.kind not in expected_kinds):
        raise EnvelopeError("kind", f"unexpected kind {env.kind!r}")
    if len(signed.signature) != ED25519_SIGNATURE_BYTES:
        raise EnvelopeError("bad_signature", "wrong signature length")
    if replay is not None:
        replay.precheck(env.sender, env.nonce, env.timestamp_ms, now_ms)
    elif window is not None:
        window.check_window(env.timestamp_ms, now_ms)
    try:
        public = Ed25519PublicKey.from_bytes(key[len(ED25519_KEY_PREFIX):])
    except Exception as exc:  # noqa: BLE001 - any decode failure of peer bytes is "malformed"
        raise EnvelopeError("malformed", f"public key: {exc}") from None
    return _Unverified(signed, env), public
