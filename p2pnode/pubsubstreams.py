"""Pubsub streams and subscriptions kept alive while a peer stays connected.

py-libp2p 0.8.1 (docs/libp2p.md#lost-subscriptions) loses track of peers in two ways
that only show at scale (simultaneous dials at start-up end pubsub streams while the
peer stays connected over another connection):

- ``Pubsub._handle_dead_peer`` forgets *all* of a peer's subscriptions whenever one
  pubsub stream to it dies, even when the peer is still connected and the stream
  its subscriptions came on (the peer's own, inbound to us) is alive. Only the peer's
  hello would restore them, which it sends when *it* opens a new stream.
  :func:`keep_subscriptions_while_connected` keeps them while the peer is connected:
  go-libp2p's rule (``handleDeadPeers`` respawns the writer and keeps the topics of a
  peer that is still connected).
- A connected peer can end up with no outbound pubsub stream at all: the library's
  re-open retries stop as soon as the peer looks disconnected (e.g. while one of two
  simultaneous connections closes), and nothing starts them again for the connection
  that survives. Nothing we publish reaches that peer and our
  subscriptions never reach it again (``gossip.resubscribe_s`` re-sends them only over
  live streams). :func:`reopen_missing_streams` (called periodically by the node) opens
  one to every connected peer that has none, and replaces a stream whose connection
  has closed. In a 50-daemon job before this, the owner knew 33 of 49 presence
  subscribers and rounds ran to their deadline with 2 of 4 updates; after, 49 of 49
  and 4 of 4 (docs/libp2p.md#lost-subscriptions).
"""

from __future__ import annotations

import time
import weakref
from typing import Any

from libp2p.peer.id import ID
from libp2p.pubsub.pubsub import Pubsub

GRACE_S = 5.0
"""A peer must lack a live stream this long before it is re-opened: the library's own
registration of a new connection is usually still under way before that."""
_MISSING: weakref.WeakKeyDictionary[Pubsub, dict[ID, float]] = weakref.WeakKeyDictionary()
"""Per pubsub, when each connected peer was first seen without a live stream."""
_REGISTERING: weakref.WeakKeyDictionary[Pubsub, set[ID]] = weakref.WeakKeyDictionary()
"""Per pubsub, the peers whose stream registration is under way."""
_applied = False
REOPENED = [0]
"""How many pubsub streams :func:`reopen_missing_streams` has re-opened in this process."""


def keep_subscriptions_while_connected() -> None:
    """Make ``Pubsub._handle_dead_peer`` keep the topics of a peer still connected.

    The library's own handler still runs (outbound queue closed, router told, stream
    re-opened); only the peer's subscriptions are put back afterwards when the peer
    has an open connection.
    """
    inner = Pubsub._handle_dead_peer

    def handle_dead_peer(self: Pubsub, peer_id: ID) -> None:
        if not self._peer_is_connected(peer_id):
            inner(self, peer_id)
            return
        topics = [t for t, peers in self.peer_topics.items() if peer_id in peers]
        count = self._peer_subscription_count.get(peer_id)
        inner(self, peer_id)
        for topic in topics:
            self.peer_topics.setdefault(topic, set()).add(peer_id)
        if count is not None:
            self._peer_subscription_count[peer_id] = count

    Pubsub._handle_dead_peer = handle_dead_peer


def one_registration_per_peer() -> None:
    """Let at most one ``Pubsub._handle_new_peer`` run per peer at a time, never a dial.

    Two registrations at once (the ``connected`` notifee of two simultaneous
    connections, or a re-open while the first registration is still under way) both
    pass the library's "already has a stream" check, both open a stream, and the second
    replaces the first's queue: the first sending task waits forever on a queue nobody
    fills, and its stream stays open. A registration that finds one in flight returns
    at once; the one in flight retries by itself while the peer stays connected.

    A registration for a peer with no open connection returns at once too: the
    library's opens its stream with ``host.new_stream``, which dials. Its retry loop
    (``_handle_new_peer_with_retry``, started by ``_handle_dead_peer`` while a closing
    connection still counts as open) then re-connected, after its back-off, every peer
    the connection manager had just trimmed, and every peer that had trimmed us
    (docs/libp2p.md#connection-manager).
    """
    inner = Pubsub._handle_new_peer

    async def handle_new_peer(self: Pubsub, peer_id: ID) -> None:
        busy = _REGISTERING.setdefault(self, set())
        if peer_id in busy or not self._peer_is_connected(peer_id):
            return
        busy.add(peer_id)
        try:
            await inner(self, peer_id)
        finally:
            busy.discard(peer_id)

    Pubsub._handle_new_peer = handle_new_peer


def _stream_closed(stream: Any) -> bool:
    """Whether ``stream``'s connection is known to be closed."""
    muxed = getattr(stream, "muxed_conn", None)
    return bool(getattr(muxed, "is_closed", False))


def reopen_missing_streams(pubsub: Pubsub, grace_s: float = GRACE_S) -> int:
    """Re-open pubsub streams that connected peers lack; return how many were started.

    A peer counts when it has an open connection, is not blacklisted, and has had for
    at least ``grace_s`` (across calls) either no outbound pubsub stream from us or one
    whose connection has closed (that one is declared dead, which re-opens it). Each
    re-open is the library's own retrying registration (at most one in flight per
    peer); it sends our hello, i.e. our subscriptions. Call from a periodic task inside
    the pubsub service's lifetime.
    """
    if not pubsub.manager.is_running:
        return 0
    started, now = 0, time.monotonic()
    missing = _MISSING.setdefault(pubsub, {})
    was_missing, missing_now = dict(missing), {}
    for peer_id in list(pubsub.host.get_network().connections):
        if pubsub.is_peer_blacklisted(peer_id) or not pubsub._peer_is_connected(peer_id):
            continue
        stream = pubsub.peers.get(peer_id)
        if stream is not None and not _stream_closed(stream):
            continue
        since = missing_now[peer_id] = was_missing.get(peer_id, now)
        if (now - since < grace_s or peer_id in pubsub._peer_stream_retries_pending
                or peer_id in _REGISTERING.get(pubsub, ())):
            continue
        del missing_now[peer_id]
        if stream is not None:
            pubsub._handle_dead_peer(peer_id)
        else:
            pubsub._schedule_peer_stream_retry(peer_id)
        started += 1
    missing.clear()
    missing.update(missing_now)
    REOPENED[0] += started
    return started


def safe_blacklist_teardown() -> None:
    """Make ``Pubsub._teardown_if_connected`` survive the peer's stream going meanwhile.

    Blacklisting a peer (our gossip guard's ban) starts it as a pubsub task: it resets
    the peer's stream, then ``del self.peers[peer_id]``. The ban also closes the
    connection, whose ``disconnected`` notifee removes the peer first while the reset
    awaits; the ``KeyError`` then ends the pubsub service and the daemon with it
    (seen with 50 daemons, docs/libp2p.md#blacklist-teardown). Here the entry is
    removed only if it is still the stream that was reset.
    """

    async def teardown_if_connected(self: Pubsub, peer_id: ID) -> None:
        stream = self.peers.get(peer_id)
        if stream is not None:
            try:
                await stream.reset()
            except Exception:  # noqa: BLE001 - as the library: a broken stream is gone
                pass
            if self.peers.get(peer_id) is stream:
                del self.peers[peer_id]
        self._forget_all_subscriptions(peer_id)

    Pubsub._teardown_if_connected = teardown_if_connected


def apply() -> None:
    """Install the library patches of this module once."""
    global _applied
    if _applied:
        return
    _applied = True
    keep_subscriptions_while_connected()
    one_registration_per_peer()
    safe_blacklist_teardown()
