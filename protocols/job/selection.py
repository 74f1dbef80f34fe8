"""Trainer selection and reputation: pure decisions, no I/O.

Reputation is a per-peer score moved by outcomes the owner witnessed and decaying
toward neutral (0) with a half-life. Selection ranks the offers that pass the
job's minimum health and the reputation floor, by reputation, then health, then
free capacity, and splits them into trainers and spares.

A paid job (``max_price`` > 0) also refuses asks above its maximum and ranks by one
score instead (``score``)::

    score = reputation + 0.5 * health - 100 * ask / max_price

each term on about the same 0..100 scale: a trainer asking the whole maximum gives
up 100 points, as much as the best reputation earns; ties go to free capacity.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

OUTCOMES = ("accepted", "late", "outvoted", "rejected", "vanished", "cheated")


@dataclass(frozen=True)
class ReputationConfig:
    """How outcomes move a peer's score. Defaults are documented in docs/jobs.md."""

    accepted: float = 10.0
    late: float = 5.0
    outvoted: float = -10.0  # valid, but left out by a robust rule (e.g. Krum)
    rejected: float = -20.0
    vanished: float = -30.0
    cheated: float = -100.0  # out of line with a replica or the owner's re-run (the heaviest)
    half_life_s: float = 3600.0
    floor: float = -40.0  # peers below this are not selected
    cap: float = 100.0

    def delta(self, outcome: str) -> float:
        """The score change for one ``outcome`` (one of ``OUTCOMES``)."""
        if outcome not in OUTCOMES:
            raise ValueError(f"unknown reputation outcome {outcome!r}")
        value: float = getattr(self, outcome)
        return value


def decayed(score: float, since_s: float, cfg: ReputationConfig) -> float:
    """``score`` after ``since_s`` seconds of decay toward 0."""
    if since_s <= 0:
        return score
    return score * math.pow(0.5, since_s / cfg.half_life_s)


def updated(score: float, since_s: float, outcome: str, cfg: ReputationConfig) -> float:
    """Decay ``score`` to now, then apply ``outcome``, clamped to [-cap, cap]."""
    value = decayed(score, since_s, cfg) + cfg.delta(outcome)
    return max(-cfg.cap, min(cfg.cap, value))


@dataclass(frozen=True)
class OfferInfo:
    """What a trainer told us about itself when it offered."""

    peer: str
    health: float
    free_slots: int
    cpu_count: int
    ask: int = 0  # wei per price unit; 0 for an unpaid job
    address: str = ""  # the trainer's wallet, bound to ``peer``; "" when none


HEALTH_WEIGHT = 0.5
PRICE_POINTS = 100.0


def score(offer: OfferInfo, reputation: float, max_price: int) -> float:
    """A paid job's ranking of one offer (higher is better; see the module doc)."""
    price = PRICE_POINTS * offer.ask / max_price if max_price > 0 else 0.0
    return reputation + HEALTH_WEIGHT * offer.health - price


def select(
    offers: Sequence[OfferInfo],
    reputation: Mapping[str, float],
    *,
    wanted: int,
    spares: int,
    min_health: float,
    floor: float,
    max_price: int = 0,
) -> tuple[list[str], list[str]]:
    """Choose ``wanted`` trainers and up to ``spares`` spares from ``offers``.

    With ``max_price`` > 0 (a paid job) an offer asking more, or without a wallet,
    is left out, and the rest are ranked by ``score``.

    Returns:
        (trainers, spares); fewer than ``wanted`` trainers when too few qualify.
    """
    seen: set[str] = set()
    fit: list[OfferInfo] = []
    for o in offers:
        if o.peer in seen or o.health < min_health or o.free_slots < 1:
            continue
        if reputation.get(o.peer, 0.0) < floor:
            continue
        if max_price > 0 and (o.ask > max_price or not o.address):
            continue
        seen.add(o.peer)
        fit.append(o)
    if max_price > 0:
        fit.sort(key=lambda o: (-score(o, reputation.get(o.peer, 0.0), max_price),
                                -o.free_slots, o.peer))
    else:
        fit.sort(key=lambda o: (-reputation.get(o.peer, 0.0), -o.health, -o.free_slots, o.peer))
    chosen = [o.peer for o in fit[:wanted]]
    return chosen, [o.peer for o in fit[wanted : wanted + spares]]
