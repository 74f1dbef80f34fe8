"""How many connections a daemon keeps, and which ones go when there are too many (pure).

No libp2p here: :mod:`p2pnode.connmgr` feeds :func:`plan_trim` a view of each
connected peer and carries out its answer (docs/network.md#connections).

The rule is go-libp2p's connection manager's, with the daemon's own notion of value:

- nothing is trimmed while at most ``high_water`` peers are connected;
- above it, peers are disconnected until ``low_water`` remain, but never a protected
  peer (a bootstrap node, a relay we hold a reservation on or that holds one on us, a
  member of one of our gossip meshes, a peer we sent a request to lately) and
  never one connected for less than ``grace_s``;
- the least useful go first: peers that share none of our gossip topics, then inbound
  before outbound (a stranger's connections before the ones we chose), then the most
  recently connected.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from dataclasses import dataclass

from pydantic import PositiveFloat, PositiveInt


@dataclass
class ConnectionsConfig:
    """``[connections]``: how many peers a daemon stays connected to (docs/daemon.md)."""

    low_water: PositiveInt = 16
    """Discovery dials new peers only while fewer than this are connected, and trimming
    stops here."""
    high_water: PositiveInt = 32
    """Above this many connected peers, the unprotected ones are trimmed."""
    grace_s: PositiveFloat = 30.0
    """A connection this young is never trimmed (its peer may be about to join a mesh)."""
    max_connections: PositiveInt = 128
    """Hard ceiling on open connections, both directions (a peer may hold up to 3): more
    are refused before the handshake, so a flood of strangers cannot exhaust a daemon."""
    max_per_ip: PositiveInt = 16
    """Inbound connections accepted from one remote IP address (loopback exempt)."""
    active_s: PositiveFloat = 600.0
    """A peer we sent a request to within this long is protected: an owner's tasked
    trainers, a trainer's owner. Requests we receive protect nobody, or any stranger
    could protect itself by asking."""
    retrim_s: PositiveFloat = 300.0
    """Discovery does not dial a peer we trimmed within this long."""
    check_s: PositiveFloat = 5.0
    """How often the connection count is checked."""


@dataclass(frozen=True)
class PeerView:
    """What :func:`plan_trim` needs to know of one connected peer.

    Args:
        peer: the peer's id.
        protected: never trimmed (bootstrap, relay, mesh member, recent request to it).
        inbound: every connection to it was opened by the peer.
        age_s: seconds since its oldest open connection was made.
        shared_topics: gossip topics both it and we are subscribed to.
    """

    peer: Hashable
    protected: bool
    inbound: bool
    age_s: float
    shared_topics: int


def plan_trim(peers: Iterable[PeerView], low_water: int, high_water: int,
              grace_s: float) -> list[Hashable]:
    """Return the peers to disconnect, least useful first (see the module docstring).

    Empty while at most ``high_water`` peers are connected; otherwise as many as bring
    the count down to ``low_water``, from the unprotected peers older than ``grace_s``
    (fewer when not enough of them are eligible).
    """
    views = list(peers)
    if len(views) <= high_water:
        return []
    eligible = [v for v in views if not v.protected and v.age_s >= grace_s]
    eligible.sort(key=lambda v: (v.shared_topics > 0, not v.inbound, v.age_s))
    return [v.peer for v in eligible[: max(0, len(views) - low_water)]]


def dial_budget(connected: int, low_water: int, max_per_round: int) -> int:
    """How many new peers discovery may dial now: enough to reach ``low_water``."""
    return max(0, min(max_per_round, low_water - connected))


def over_ip_limit(ips: Iterable[str], ip: str, limit: int) -> bool:
    """Whether one more inbound connection from ``ip`` would exceed ``limit``.

    ``ips`` are the remote addresses of the connections open now. Loopback is exempt
    (every daemon of a one-machine network shares it).
    """
    if ip.startswith("127.") or ip == "::1":
        return False
    return sum(1 for each in ips if each == ip) >= limit
