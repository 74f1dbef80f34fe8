"""Gossip topic validators: which signed kinds each distro-train topic may carry.

A validator runs in py-libp2p before a message is delivered or forwarded, so junk
does not travel. It checks the envelope cheaply (size, Ed25519 key, signer equal to
the gossip ``from`` peer, kind for the topic, time window, then the signature and
the body) and remembers nothing: the nonce belongs to the handler's replay guard.
A re-published genuine message has another gossip ``from`` and is dropped here.

A validator answers with a :class:`Verdict`, as gossipsub v1.1 does. A message that is
malformed, badly signed, of the wrong kind or re-published under another ``from`` is
``REJECT``: an honest peer validates before it forwards, so the forwarder is charged
for it. An authentic message refused only for its time (``stale``: dated outside the
window) is ``IGNORE``: dropped, but not charged. An honest peer forwards such messages
when the network or either daemon is slow, or when clocks differ; each still costs the
forwarder one token of its rate limit, like any message. A stale message's signature
and body are checked before it is called authentic, so a forgery with an old date is
still a ``REJECT``. (Replays are the handler's to refuse: a validator remembers no
nonce.)
"""

from __future__ import annotations

import enum
from collections.abc import Callable

from libp2p.peer.id import ID

from protocols.envelope import ReplayGuard, open_message
from protocols.errors import EnvelopeError
from protocols.job import JOBS_TOPIC, job_topic
from protocols.presence import TOPIC as PRESENCE_TOPIC


class Verdict(enum.Enum):
    """A topic validator's answer (see the module docstring)."""

    ACCEPT = "accept"
    IGNORE = "ignore"  # dropped; not the forwarder's fault (dated outside the window)
    REJECT = "reject"  # dropped and charged to the forwarder


UNATTRIBUTED = frozenset({"stale"})
"""Envelope refusals that say nothing against the peer that forwarded the message."""

Validator = Callable[[bytes, ID], Verdict]
"""``validator(data, from_peer) -> Verdict``: synchronous, cheap, never raises."""

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

    def validate(data: bytes, from_peer: ID) -> Verdict:
        try:
            open_message(data, expected_kinds=kinds, expected_sender=from_peer, window=window)
        except EnvelopeError as exc:
            if exc.reason not in UNATTRIBUTED:
                return Verdict.REJECT
            try:  # every check but the date: only an authentic message is merely late
                open_message(data, expected_kinds=kinds, expected_sender=from_peer)
            except EnvelopeError:
                return Verdict.REJECT
            return Verdict.IGNORE
        return Verdict.ACCEPT

    return validate


def default_validator(topic: str, window: ReplayGuard) -> Validator | None:
    """The envelope validator for a distro-train topic, None for any other topic."""
    kinds = kinds_for_topic(topic)
    return None if kinds is None else envelope_validator(kinds, window)
