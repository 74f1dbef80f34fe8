"""Prices: what an owner pays, what a trainer asks, what a round pays (pure).

A job's ``[price]`` table sets its ``budget`` (wei escrowed on the ledger), its
``max_price`` (the most paid per unit) and the ``unit``: ``update`` (one accepted
update) or ``ksamples`` (a thousand samples trained in an accepted update). A
budget of 0 is an unpaid job.

A trainer's ``[market]`` table sets its ask: ``ask`` wei per unit, raised by
``ask_per_queued`` wei per task already queued or running (``rule = "queue"``), so
a busy trainer costs more; ``rule = "fixed"`` ignores the queue.

The round's price is a uniform-price reverse auction: the highest ask (as last
offered) among the trainers whose updates the round pays, never above
``max_price``. Every update the round pays (verified work, docs/ledger.md) earns
that price per unit; an update that was rejected (any reason, ``no_progress``
included), outvoted, late and left out, or not verified earns nothing. When the
budget left cannot pay a round in full, updates are paid in the order given until
it runs out (the last one partly), and later ones get nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import Field

Unit = Literal["update", "ksamples"]
Wei = Annotated[int, Field(ge=0, lt=2**255, strict=False)]


@dataclass(frozen=True)
class PriceTerms:
    """A job's ``[price]`` table (amounts in wei; a TOML string of digits is accepted)."""

    budget: Wei = 0
    max_price: Wei = 0
    unit: Unit = "update"

    @property
    def paid(self) -> bool:
        """Whether the job pays at all."""
        return self.budget > 0


@dataclass(frozen=True)
class AskRule:
    """A trainer's ``[market]`` table: its ask in wei per unit (docs/ledger.md)."""

    ask: Wei = 0
    rule: Literal["fixed", "queue"] = "fixed"
    ask_per_queued: Wei = 0
    min_price: Wei = 0  # jobs whose max_price is below this are not offered for


def ask_for(rule: AskRule, queued: int) -> int:
    """The ask, in wei per unit, of a trainer with ``queued`` tasks queued or running."""
    if rule.rule == "queue":
        return rule.ask + rule.ask_per_queued * max(0, queued)
    return rule.ask


def clearing_price(asks: Sequence[int], max_price: int) -> int:
    """The uniform price of a round: the highest selected ask, capped at ``max_price``."""
    return min(max(asks, default=0), max_price)


def units(unit: Unit, samples: int) -> tuple[int, int]:
    """``(numerator, denominator)`` of the units one update of ``samples`` counts for."""
    return (1, 1) if unit == "update" else (max(0, samples), 1000)


@dataclass(frozen=True)
class Payment:
    """What one accepted update earns."""

    peer: str
    address: str
    update: str
    samples: int
    amount: int


def pay_round(
    used: Sequence[tuple[str, str, str, int]], *, price: int, unit: Unit, left: int
) -> list[Payment]:
    """Payments for a round's used updates, ``(peer, address, sha256, samples)`` each.

    An update from a peer without a wallet address earns nothing. Amounts never
    add up to more than ``left``.
    """
    out: list[Payment] = []
    for peer, address, sha, samples in used:
        if not address:
            continue
        num, den = units(unit, samples)
        amount = min(price * num // den, left)
        if amount <= 0:
            continue
        left -= amount
        out.append(Payment(peer, address, sha, samples, amount))
    return out
