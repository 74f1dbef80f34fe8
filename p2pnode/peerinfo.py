"""The public view of one live peer, as ``node.peers()`` and ``node.peers`` return it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from libp2p.peer.id import ID

from protocols.pb import distro_pb2 as pb
from protocols.presence.table import PeerEntry


@dataclass(frozen=True)
class PeerInfo:
    """A live peer: identity, addresses, latest presence status and its age."""

    peer_id: ID
    addrs: list[str]
    status: pb.Presence
    last_seen_s: float
    """Seconds since its last presence was accepted."""
    connected: bool
    """Whether we hold a direct connection to it."""

    @property
    def health(self) -> float:
        """The peer's advertised health score (0..100)."""
        return float(self.status.health)

    @property
    def accepting(self) -> bool:
        """Whether the peer advertises that it takes work."""
        return bool(self.status.accepting)

    def to_json(self) -> dict[str, Any]:
        """Return the JSON object of this peer (docs/control.md, ``node.peers``)."""
        s = self.status
        return {
            "peer_id": self.peer_id.to_base58(),
            "addrs": self.addrs,
            "health": round(self.health, 2),
            "accepting": self.accepting,
            "version": s.version,
            "cpu_count": s.cpu_count,
            "mem_total": s.mem_total,
            "mem_available": s.mem_available,
            "gpu": s.gpu,
            "cpu_percent": round(s.cpu_percent, 1),
            "mem_percent": round(s.mem_percent, 1),
            "queue_length": s.queue_length,
            "queue_capacity": s.queue_capacity,
            "seq": s.seq,
            "last_seen_s": round(self.last_seen_s, 3),
            "connected": self.connected,
        }


def peer_info_from_entry(entry: PeerEntry, now: float, connected: bool) -> PeerInfo:
    """Build the public view of a peer-table entry at monotonic time ``now``."""
    return PeerInfo(entry.peer_id, list(entry.status.addrs), entry.status,
                    now - entry.last_seen, connected)
