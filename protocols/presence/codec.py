"""Presence codec: health score and signed status messages (kind ``presence``)."""

from __future__ import annotations

import math

from libp2p.crypto.keys import PrivateKey
from libp2p.peer.id import ID

from protocols.envelope import ReplayGuard, open_message, seal_message
from protocols.errors import EnvelopeError
from protocols.pb import distro_pb2 as pb

KIND = "presence"
MAX_ADDRS = 16
MAX_ADDR_CHARS = 256
MAX_TEXT_CHARS = 128


def health_score(cpu_percent: float, mem_percent: float, queue_length: int,
                 queue_capacity: int) -> float:
    """Return ``(100-cpu%)*0.4 + (100-mem%)*0.4 + free_queue%*0.2``, within 0..100.

    Inputs outside their range are clamped; a zero capacity counts as a full queue.
    """
    cpu = min(max(cpu_percent, 0.0), 100.0)
    mem = min(max(mem_percent, 0.0), 100.0)
    if queue_capacity <= 0:
        free_pct = 0.0
    else:
        free_pct = 100.0 * min(max(queue_capacity - queue_length, 0), queue_capacity)
        free_pct /= queue_capacity
    return round((100.0 - cpu) * 0.4 + (100.0 - mem) * 0.4 + free_pct * 0.2, 2)


def encode_presence(key: PrivateKey, status: pb.Presence) -> bytes:
    """Return the signed wire bytes of ``status`` (raises EnvelopeError if oversize)."""
    return seal_message(key, KIND, status)


def decode_presence(
    data: bytes, from_peer: ID, replay: ReplayGuard | None = None
) -> tuple[ID, pb.Presence]:
    """Verify and check a presence message received from gossip peer ``from_peer``.

    The envelope's signer must be the gossip message's ``from`` peer.

    Raises:
        EnvelopeError: Any failure of the envelope, or ``bad_body`` for out-of-range
            fields (health outside 0..100, too many or too long addresses, ...).
    """
    opened = open_message(data, expected_kinds=frozenset({KIND}), expected_sender=from_peer,
                          replay=replay)
    body = opened.body
    assert isinstance(body, pb.Presence)
    who = opened.sender.to_base58()
    for name in ("health", "cpu_percent", "mem_percent"):
        value = getattr(body, name)
        if not math.isfinite(value) or not 0.0 <= value <= 100.0:
            raise EnvelopeError("bad_body", f"{name} {value} outside 0..100", who)
    if len(body.addrs) > MAX_ADDRS or any(len(a) > MAX_ADDR_CHARS for a in body.addrs):
        raise EnvelopeError("bad_body", "too many or too long addrs", who)
    if len(body.version) > MAX_TEXT_CHARS or len(body.gpu) > MAX_TEXT_CHARS:
        raise EnvelopeError("bad_body", "version/gpu too long", who)
    return opened.sender, body
