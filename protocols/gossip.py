"""Gossip topic validators: which signed kinds each distro-train topic may carry.

A validator runs in py-libp2p before a message is delivered or forwarded, so junk
does not travel. It checks the envelope cheaply (size, Ed25519 key, signer equal to
the gossip ``from`` peer, kind for the topic, time window, then the signature and
the body) and remembers nothing: the nonce belongs to the handler's replay guard.
A re-published genuine message has another gossip ``from`` and is dropped here.
"""

from __future__ import annotations

from collections.abc import Callable

from libp2p.peer.id import ID

from protocols.envelope import ReplayGuard, open_message
from protocols.errors import EnvelopeError
from protocols.job import JOBS_TOPIC, job_topic
from protocols.presence import TOPIC as PRESENCE_TOPIC

Validator = Callable[[bytes, ID], bool]
"""``validator(data, from_peer) -> bool``: synchronous, cheap, never raises."""

JOB_TOPIC_PREFIX = job_topic("")
TOPIC_KINDS: dict[str, frozenset[str]] = {
    PRESENCE_TOPIC: frozenset({"presence"}),
    JOBS_TOPIC: frozenset({"job.announce"}),
    JOB_TOPIC_PREFIX: frozenset({"job.update", "job.round"}),
}


def kinds_for_topic(topic: str) -> frozenset[str] | None:
    """The kinds ``topic`` carries, or None when it is not a distro-train envelope topic."""
    if topic.startswith(JOB_TOPIC_PREFIX) and topic != JOB_TOPIC_PREFIX:
        return TOPIC_KINDS[JOB_TOPIC_PREFIX]
    return TOPIC_KINDS.get(topic)


def envelope_validator(kinds: frozenset[str], window: ReplayGuard) -> Validator:
    """Return a validator accepting only valid envelopes of ``kinds`` signed by ``from``."""

    def validate(data: bytes, from_peer: ID) -> bool:
        try:
            open_message(data, expected_kinds=kinds, expected_sender=from_peer, window=window)
        except EnvelopeError:
            return False
        return True

    return validate


def default_validator(topic: str, window: ReplayGuard) -> Validator | None:
    """The envelope validator for a distro-train topic, None for any other topic."""
    kinds = kinds_for_topic(topic)
    return None if kinds is None else envelope_validator(kinds, window)
