"""The owner's reputation book: stored scores, decayed on read, charged on evidence.

A peer is charged only for what it signed: an update it announced and the owner
checked, a task it accepted and then dropped. A message that fails verification
names nobody (it may carry anyone's public key) and so charges nobody.
"""

from __future__ import annotations

import time

from protocols.job.ports import JobStoreLike
from protocols.job.selection import ReputationConfig, decayed, updated


class Reputation:
    """Scores of every peer this owner dealt with, persisted in the job store."""

    def __init__(self, store: JobStoreLike, cfg: ReputationConfig) -> None:
        self.cfg = cfg
        self._store = store
        # A copy of the stored scores, readable from other threads (metrics).
        self.scores: dict[str, tuple[float, int]] = store.reputation()

    def of(self, peer: str) -> float:
        """``peer``'s score now (decayed; 0 for a peer we never dealt with)."""
        score, at = self.scores.get(peer, (0.0, 0))
        return decayed(score, time.time() - at / 1000, self.cfg)

    def view(self) -> dict[str, float]:
        """Every known peer's score now."""
        return {p: self.of(p) for p in self.scores}

    def charge(self, peer: str, outcome: str) -> None:
        """Apply one final ``outcome`` (see ``selection.OUTCOMES``) to ``peer``."""
        now_ms = int(time.time() * 1000)
        score, at = self.scores.get(peer, (0.0, now_ms))
        new = updated(score, (now_ms - at) / 1000, outcome, self.cfg)
        self._store.set_reputation(peer, new, now_ms)
        self.scores[peer] = (new, now_ms)
