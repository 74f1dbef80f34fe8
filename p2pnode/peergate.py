"""Per-peer gossip rate limit: a token bucket per forwarding peer, then a ban (pure).

Each gossip message a peer forwards costs one token, each one a topic validator
refuses costs ``invalid_cost`` more. Tokens refill at ``rate`` per second up to
``burst``. A message that finds the bucket empty is dropped and is a *strike*; a peer
whose bucket refills completely starts again with no strikes. At ``max_strikes`` the
peer is banned for ``ban_s`` seconds: the caller disconnects it and ignores it.

Memory is bounded: at most ``max_peers`` buckets (idle full buckets go first).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass


@dataclass
class _Bucket:
    tokens: float
    at: float
    strikes: int = 0


class PeerGate:
    """Admits or drops each peer's messages; see the module docstring.

    Args:
        rate: Tokens per second per peer.
        burst: Bucket size.
        invalid_cost: Extra tokens an invalid message costs.
        max_strikes: Dropped messages before a ban.
        ban_s: Ban length in seconds.
        clock: Seconds (monotonic) for tests.
    """

    def __init__(self, rate: float, burst: int, invalid_cost: float, max_strikes: int,
                 ban_s: float, *, max_peers: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.invalid_cost = invalid_cost
        self.max_strikes = max_strikes
        self.ban_s = ban_s
        self.max_peers = max_peers
        self.clock = clock
        self._buckets: dict[Hashable, _Bucket] = {}
        self._banned: dict[Hashable, float] = {}
        self.dropped = 0
        self.bans = 0
        self.ignored = 0  # refused by a validator but not charged (p2pnode.host.set_validator)

    def _bucket(self, peer: Hashable, now: float) -> _Bucket:
        b = self._buckets.get(peer)
        if b is None:
            if len(self._buckets) >= self.max_peers:
                self._shrink(now)
            b = self._buckets[peer] = _Bucket(self.burst, now)
            return b
        b.tokens = min(self.burst, b.tokens + (now - b.at) * self.rate)
        b.at = now
        if b.tokens >= self.burst:
            b.strikes = 0
        return b

    def _shrink(self, now: float) -> None:
        for peer in [p for p, b in self._buckets.items()
                     if b.tokens + (now - b.at) * self.rate >= self.burst]:
            del self._buckets[peer]
        while len(self._buckets) >= self.max_peers:
            del self._buckets[next(iter(self._buckets))]

    def is_banned(self, peer: Hashable) -> bool:
        """Whether ``peer`` is banned now (an expired ban is lifted here)."""
        until = self._banned.get(peer)
        if until is None:
            return False
        if self.clock() >= until:
            del self._banned[peer]
            return False
        return True

    def admit(self, peer: Hashable) -> bool:
        """Take one token for a message from ``peer``; False means drop it.

        After the call, :meth:`should_ban` says whether this drop was the last straw.
        """
        if self.is_banned(peer):
            self.dropped += 1
            return False
        now = self.clock()
        b = self._bucket(peer, now)
        if b.tokens >= 1.0:
            b.tokens -= 1.0
            return True
        b.strikes += 1
        self.dropped += 1
        return False

    def charge_invalid(self, peer: Hashable) -> None:
        """``peer`` forwarded a message a validator refused: it costs extra tokens."""
        b = self._bucket(peer, self.clock())
        b.tokens = max(b.tokens - self.invalid_cost, -self.burst)
        if b.tokens < 0:
            b.strikes += 1

    def should_ban(self, peer: Hashable) -> bool:
        """Ban ``peer`` if it reached ``max_strikes``; True exactly once per ban."""
        b = self._buckets.get(peer)
        if b is None or b.strikes < self.max_strikes or self.is_banned(peer):
            return False
        self._banned[peer] = self.clock() + self.ban_s
        del self._buckets[peer]
        self.bans += 1
        return True

    def expired_bans(self) -> list[Hashable]:
        """Lift and return the bans that are over."""
        now = self.clock()
        over = [p for p, until in self._banned.items() if now >= until]
        for p in over:
            del self._banned[p]
        return over
