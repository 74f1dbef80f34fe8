"""Signed envelopes: every control message is signed by its sender and checked on receipt.

Gossipsub's strict signing covers one hop of one message; messages that are
forwarded, stored or replayed later need their own signature. ``seal_message``
wraps a protobuf body in an ``Envelope`` (kind, sender, job, round, timestamp,
nonce), signs it with the sender's libp2p Ed25519 key, and ``open_message``
size-checks, decodes, verifies the signature and the sender, and refuses replays.
"""

from __future__ import annotations

import os
import time
from collections import OrderedDict
from dataclasses import dataclass

from google.protobuf.message import DecodeError, Message
from libp2p.crypto.keys import PrivateKey, PublicKey
from libp2p.crypto.serialization import deserialize_public_key
from libp2p.peer.id import ID

from protocols.errors import EnvelopeError
from protocols.pb import distro_pb2 as pb

DOMAIN = b"distro-train/v1\x00"
MAX_MESSAGE_BYTES = 64 * 1024
"""No control message may be larger than this; larger bytes are refused undecoded."""

BODY_TYPES: dict[str, type[Message]] = {
    "presence": pb.Presence,
    "job.announce": pb.JobAnnounce,
    "job.offer": pb.Offer,
    "job.assign": pb.Assign,
    "job.ack": pb.Ack,
    "job.update": pb.UpdateAnnounce,
    "job.round": pb.RoundResult,
    "job.cancel": pb.JobCancel,
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
        EnvelopeError: ``kind`` is unknown or does not match the body type, or the
            result would exceed ``MAX_MESSAGE_BYTES``.
    """
    expected = BODY_TYPES.get(kind)
    if expected is None or not isinstance(body, expected):
        raise EnvelopeError("kind", f"{kind!r} does not match {type(body).__name__}")
    public = key.get_public_key()
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
    now_ms: int | None = None,
) -> Opened:
    """Verify and decode wire bytes made by ``seal_message``.

    Args:
        data: Untrusted bytes from the network.
        expected_kinds: When given, any other kind is refused.
        expected_sender: When given (e.g. the stream's remote peer, or the gossip
            message's ``from``), a different signer is refused as ``wrong_sender``.
        replay: When given, a (sender, nonce) seen before, or a timestamp outside
            its window, is refused.
        now_ms: Clock override for tests.

    Raises:
        EnvelopeError: With a reason code; nothing unverified is returned.
    """
    if len(data) > MAX_MESSAGE_BYTES:
        raise EnvelopeError("oversize", f"{len(data)} bytes > {MAX_MESSAGE_BYTES}")
    try:
        signed = pb.Signed.FromString(data)
        env = pb.Envelope.FromString(signed.envelope)
    except DecodeError as exc:
        raise EnvelopeError("malformed", str(exc)) from None
    try:
        public = deserialize_public_key(env.public_key)
        sender = ID.from_pubkey(public)
    except Exception as exc:  # noqa: BLE001 - any decode failure of peer bytes is "malformed"
        raise EnvelopeError("malformed", f"public key: {exc}") from None
    claimed = env.sender
    if sender.to_bytes() != claimed:
        raise EnvelopeError("wrong_sender", "key does not match sender", sender.to_base58())
    try:
        valid = public.verify(DOMAIN + signed.envelope, signed.signature)
    except Exception:  # noqa: BLE001 - a malformed signature is a bad signature
        valid = False
    if not valid:
        raise EnvelopeError("bad_signature", "", sender.to_base58())
    if expected_sender is not None and sender != expected_sender:
        raise EnvelopeError(
            "wrong_sender", f"expected {expected_sender.to_base58()}", sender.to_base58()
        )
    body_type = BODY_TYPES.get(env.kind)
    if body_type is None or (expected_kinds is not None and env.kind not in expected_kinds):
        raise EnvelopeError("kind", f"unexpected kind {env.kind!r}", sender.to_base58())
    try:
        body = body_type.FromString(env.body)
    except DecodeError as exc:
        raise EnvelopeError("bad_body", str(exc), sender.to_base58()) from None
    if replay is not None:
        replay.check(sender.to_bytes(), env.nonce, env.timestamp_ms, now_ms)
    return Opened(
        sender=sender,
        public_key=public,
        kind=env.kind,
        job_id=env.job_id,
        round=env.round,
        timestamp_ms=env.timestamp_ms,
        nonce=env.nonce,
        body=body,
    )


class ReplayGuard:
    """Refuses a message seen before, or one whose timestamp is outside the window.

    Memory is bounded: nonces are remembered for ``window_s`` (older messages are
    refused as ``stale`` anyway) and at most ``capacity`` of them; when full, the
    oldest is forgotten and the window shrinks to what is remembered, so an old
    message never gets through by overflowing the memory.
    """

    def __init__(self, window_s: float = 120.0, capacity: int = 100_000) -> None:
        self.window_ms = int(window_s * 1000)
        self.capacity = capacity
        self._seen: OrderedDict[bytes, int] = OrderedDict()
        self._floor_ms = 0

    def check(self, sender: bytes, nonce: bytes, timestamp_ms: int, now_ms: int | None) -> None:
        """Record (sender, nonce), or raise EnvelopeError ``replay``/``stale``."""
        now = int(time.time() * 1000) if now_ms is None else now_ms
        who = ID(sender).to_base58()
        if len(nonce) != 16:
            raise EnvelopeError("malformed", "nonce must be 16 bytes", who)
        if abs(now - timestamp_ms) > self.window_ms or timestamp_ms < self._floor_ms:
            raise EnvelopeError("stale", f"timestamp {timestamp_ms} vs now {now}", who)
        key = sender + nonce
        if key in self._seen:
            raise EnvelopeError("replay", "", who)
        self._seen[key] = timestamp_ms
        while self._seen:
            oldest_key, oldest_ts = next(iter(self._seen.items()))
            if len(self._seen) > self.capacity:
                self._floor_ms = max(self._floor_ms, oldest_ts + 1)
            elif oldest_ts >= now - self.window_ms:
                break
            del self._seen[oldest_key]
