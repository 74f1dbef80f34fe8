"""The peer table: the latest presence of each peer and when it was heard (pure logic)."""

from __future__ import annotations

from dataclasses import dataclass

from libp2p.peer.id import ID

from protocols.pb import distro_pb2 as pb


@dataclass
class PeerEntry:
    """What we know of one live peer."""

    peer_id: ID
    status: pb.Presence
    last_seen: float
    """Local monotonic time of the last accepted presence."""


class PeerTable:
    """Live peers by presence. Feed it events; it never touches the network.

    Args:
        silence_timeout_s: A peer not heard from for this long is forgotten.
        capacity: At most this many peers are kept; a new peer beyond it is ignored.
    """

    def __init__(self, silence_timeout_s: float, capacity: int = 10_000) -> None:
        self.silence_timeout_s = silence_timeout_s
        self.capacity = capacity
        self._peers: dict[ID, PeerEntry] = {}

    def observe(self, peer_id: ID, status: pb.Presence, now: float) -> bool:
        """Record ``status`` as the peer's latest; return True when the peer is new.

        Replays are refused before this (envelope replay guard), so every status is
        fresh; ``seq`` is not used to order them because a restarted peer restarts at 1.
        """
        entry = self._peers.get(peer_id)
        if entry is None:
            if len(self._peers) >= self.capacity:
                return False
            self._peers[peer_id] = PeerEntry(peer_id, status, now)
            return True
        entry.status = status
        entry.last_seen = now
        return False

    def expire(self, now: float) -> list[ID]:
        """Forget peers silent past the timeout; return them (they left)."""
        gone = [p for p, e in self._peers.items() if now - e.last_seen > self.silence_timeout_s]
        for p in gone:
            del self._peers[p]
        return gone

    def get(self, peer_id: ID) -> PeerEntry | None:
        """Return the entry of ``peer_id`` or None."""
        return self._peers.get(peer_id)

    def entries(self) -> list[PeerEntry]:
        """Return all live entries, ordered by peer id."""
        return sorted(self._peers.values(), key=lambda e: e.peer_id.to_base58())

    def __len__(self) -> int:
        return len(self._peers)
