"""Heterogeneity-aware share sizing: how much of a round's data each slot gets (pure).

No I/O, no clock: the owner (``protocols/job/owner/speeds.py``) feeds in what it
learnt of each slot holder's speed and the round's chunks; :func:`plan` says which
chunks each slot's task trains on. docs/jobs.md ("Sized shares") has the design.

The model of one task of ``n`` samples on peer ``i``::

    t_i(n) = a_i + n * b_i
    a_i = fixed_bytes / link_i         (the model down and the update up: the same
                                        whatever the share; chunks are cached)
    b_i = epochs / throughput_i        (seconds of training per sample)

:func:`plan` finds the finish time ``T`` at which every holder would be done
(water-filling: ``sum(clamp((T - a_i) / b_i, lo, hi)) = N``), each share bounded to
``[min_share, max_share]`` times the equal share, then moves whole chunks between
slots until each is as close to its target as chunks allow. A slot whose smallest
share would still end after the others can finish all the data without it (a link so
slow that the model down and the update up alone take that long) gets nothing: it
sits the round out. Only slots the caller names may (``may_sit_out``: the owner names
those whose figures rest on more than one task), never so many that the rest would
need more than ``max_share`` each. A new layout is used only when it is predicted to
end the round at least ``min_gain`` and ``min_gain_s`` sooner than the current one:
moving chunks costs the receivers one download, and noise must not reshuffle the
data every round.

Figures from peers are hostile input: a figure that is not a finite positive number
counts as unknown, every figure is clamped to :class:`Limits`, and an unknown peer is
taken to be as fast as the median known one. With no known figure the layout is kept.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar


class ChunkLike(Protocol):
    """What sizing reads of a chunk."""

    @property
    def samples(self) -> int:
        """Training samples in the chunk."""

    @property
    def size(self) -> int:
        """Its bytes."""


C = TypeVar("C", bound=ChunkLike)


@dataclass(frozen=True)
class Speed:
    """What the owner knows of one peer's speed in one job.

    Attributes:
        samples_per_s: Training throughput (samples times epochs per second).
        bytes_per_s: Link speed (bytes moved per second of not training).
    """

    samples_per_s: float
    bytes_per_s: float


@dataclass(frozen=True)
class Observation:
    """One finished task, as the owner saw it.

    Attributes:
        sample_epochs: Samples in the task times the job's epochs.
        bytes: What the task moved by the owner's count (model down, chunks the
            peer did not hold before, the update up).
        seconds: Owner-measured: the peer accepted the task -> its update announced.
        train_seconds: The peer's own (signed, unverifiable) claim of its training time.
    """

    sample_epochs: float
    bytes: float
    seconds: float
    train_seconds: float


@dataclass(frozen=True)
class Limits:
    """Bounds of sizing (the ``[owner]`` table's ``shares_*`` settings).

    Attributes:
        min_share: Smallest share, as a fraction of the equal share.
        max_share: Largest share, as a multiple of the equal share.
        min_gain: A new layout must cut the predicted round time by this fraction.
        min_gain_s: ... and by at least these seconds (a smaller cut is within what
            the owner's clock can tell apart: gossip, scheduling).
        min_train_fraction: A peer's claimed training time is taken as at least this
            part of the owner-measured task time (and at most all of it).
        min_samples_per_s: Smallest throughput believed (a slower claim is raised).
        max_samples_per_s: Largest throughput believed.
        min_bytes_per_s: Smallest link speed believed.
        max_bytes_per_s: Largest link speed believed.
    """

    min_share: float = 0.25
    max_share: float = 2.0
    min_gain: float = 0.2
    min_gain_s: float = 1.0
    min_train_fraction: float = 0.1
    min_samples_per_s: float = 1e-3
    max_samples_per_s: float = 1e8
    min_bytes_per_s: float = 1.0
    max_bytes_per_s: float = 1e11

    def clamp(self, s: Speed) -> Speed:
        """``s`` with each figure within these bounds."""
        return Speed(
            min(max(s.samples_per_s, self.min_samples_per_s), self.max_samples_per_s),
            min(max(s.bytes_per_s, self.min_bytes_per_s), self.max_bytes_per_s),
        )


def speed_of(obs: Observation, limits: Limits = Limits()) -> Speed | None:
    """A peer's speed from one finished task, or None when the figures say nothing.

    The owner's own measurement (``seconds``) bounds the peer's claim: training is
    taken as ``clamp(train_seconds, min_train_fraction * seconds, seconds)`` (a NaN
    claim as all of it), the rest of the time as moving bytes.
    """
    seconds, work = obs.seconds, obs.sample_epochs
    if not (_positive(seconds) and _positive(work)) or not math.isfinite(obs.bytes):
        return None
    claim = obs.train_seconds if math.isfinite(obs.train_seconds) else seconds
    train = min(max(claim, limits.min_train_fraction * seconds), seconds)
    moving = max(seconds - train, seconds * 1e-3)
    return limits.clamp(Speed(work / train, max(obs.bytes, 1.0) / moving))


def blend(old: Speed | None, new: Speed, weight: float = 0.5) -> Speed:
    """``new`` averaged into ``old`` (per-unit times, so predicted seconds average)."""
    if old is None or not (_positive(old.samples_per_s) and _positive(old.bytes_per_s)):
        return new

    def mix(a: float, b: float) -> float:
        if not _positive(b):
            return a
        return 1.0 / ((1 - weight) / a + weight / b)

    return Speed(mix(old.samples_per_s, new.samples_per_s), mix(old.bytes_per_s, new.bytes_per_s))


@dataclass(frozen=True)
class Plan(Generic[C]):
    """The chunks of each slot for a round, and why.

    Attributes:
        layout: Each slot's chunks (every chunk of the input, each once).
        targets: Each slot's ideal share in samples (before chunk rounding).
        predicted_s: Each slot's predicted task seconds under ``layout``.
        makespan_s: The predicted round time under ``layout`` (the slowest slot).
        before_s: The predicted round time under the input layout.
        reason: ``sized`` (a new layout), ``kept`` (not ``min_gain`` better),
            ``no_figures`` (no known speed: the input is kept), ``one_slot``.
    """

    layout: dict[int, tuple[C, ...]]
    targets: dict[int, float]
    predicted_s: dict[int, float]
    makespan_s: float
    before_s: float
    reason: str

    def explain(self) -> str:
        """One line a log or a status can show."""
        shares = ", ".join(
            f"slot {s}: {sum(c.samples for c in cs)} samples"
            + (" (sits out)" if not cs else
               f" ~{self.predicted_s[s]:.1f} s" if s in self.predicted_s else "")
            for s, cs in sorted(self.layout.items())
        )
        if not self.predicted_s:
            return f"{self.reason}: {shares}"
        return (f"{self.reason}: predicted round {self.before_s:.1f} s as it was, "
                f"{self.makespan_s:.1f} s as planned; {shares}")


def plan(
    current: Mapping[int, Sequence[C]],
    speeds: Mapping[int, Speed | None],
    *,
    epochs: int,
    fixed_bytes: int,
    limits: Limits = Limits(),
    may_sit_out: Collection[int] | None = None,
) -> Plan[C]:
    """Size the slots of ``current`` (slot -> its chunks now) by their holders' ``speeds``.

    Deterministic: the same inputs give the same plan. Every chunk of ``current`` ends
    up in exactly one slot. A slot may end up with none (it sits the round out) only
    if it is in ``may_sit_out`` (None: any slot); every other slot keeps at least
    ``min_share`` of the equal share, as near as whole chunks allow, and one with no
    chunk now gets its share back even if that makes the round longer.
    """
    layout = {s: tuple(cs) for s, cs in sorted(current.items())}
    if len(layout) <= 1 or not any(layout.values()):
        return Plan(layout, {}, {}, 0.0, 0.0, "one_slot")
    cost = _costs(layout, speeds, epochs=max(1, epochs), fixed_bytes=fixed_bytes, limits=limits)
    if cost is None:
        return Plan(layout, {}, {}, 0.0, 0.0, "no_figures")
    total = sum(_samples(cs) for cs in layout.values())
    out = set(layout) if may_sit_out is None else set(may_sit_out) & set(layout)
    targets = _targets(cost, total, limits, out)
    moved = _move(layout, targets)
    times, before = _times(moved, cost), _times(layout, cost)
    after_s, before_s = max(times.values()), max(before.values())
    # A slot that sits out now but may not any more (a new holder, or one to measure
    # again) gets its share back whatever that costs.
    back = total > 0 and any(not layout[s] for s in layout if s not in out)
    if back or (after_s < before_s * (1 - limits.min_gain)
                and before_s - after_s >= limits.min_gain_s):
        return Plan(moved, targets, times, after_s, before_s, "sized")
    return Plan(layout, targets, before, before_s, before_s, "kept")


def _positive(x: float) -> bool:
    return math.isfinite(x) and x > 0


def _samples(chunks: Sequence[ChunkLike]) -> int:
    return sum(max(0, c.samples) for c in chunks)


def _costs(
    layout: Mapping[int, Sequence[ChunkLike]],
    speeds: Mapping[int, Speed | None],
    *,
    epochs: int,
    fixed_bytes: int,
    limits: Limits,
) -> dict[int, tuple[float, float]] | None:
    """Each slot's (a, b) of ``t(n) = a + n b``; None when no speed is known."""
    known: dict[int, Speed] = {}
    for slot in layout:
        s = speeds.get(slot)
        if s is not None and _positive(s.samples_per_s) and _positive(s.bytes_per_s):
            known[slot] = limits.clamp(s)
    if not known:
        return None
    typical = Speed(statistics.median(k.samples_per_s for k in known.values()),
                    statistics.median(k.bytes_per_s for k in known.values()))
    fixed = max(0, fixed_bytes)
    return {
        slot: (fixed / sp.bytes_per_s, epochs / sp.samples_per_s)
        for slot in layout
        for sp in [known.get(slot, typical)]
    }


def _targets(
    cost: Mapping[int, tuple[float, float]], total: int, limits: Limits, out: set[int]
) -> dict[int, float]:
    """Shares (samples) that end the round soonest, every taking part slot together.

    A slot whose smallest share alone (its fixed cost and ``min_share`` of the equal
    share) would end after the others can finish without it gets nothing: it sits
    the round out. Slots are left out slowest-minimum first while that ends the
    round sooner and the rest can take the data within ``max_share``.
    """
    equal = total / len(cost)
    lo = min(equal, max(0.0, limits.min_share) * equal)
    hi = max(equal, min(float(total), limits.max_share * equal))
    order = sorted(out, key=lambda s: (-(cost[s][0] + lo * cost[s][1]), s))
    best: dict[int, float] = _fill(cost, total, lo, hi)
    for k in range(1, min(len(order) + 1, len(cost))):
        taking = {s: c for s, c in cost.items() if s not in order[:k]}
        if hi * len(taking) < total:
            break
        shares = _fill(taking, total, lo, hi)
        if _finish(shares, cost) < _finish(best, cost):
            best = shares
    return {slot: best.get(slot, 0.0) for slot in cost}


def _fill(cost: Mapping[int, tuple[float, float]], total: int, lo: float,
          hi: float) -> dict[int, float]:
    """Water-filling: the finish time ``t`` at which the slots' shares sum to ``total``."""

    def share(a: float, b: float, t: float) -> float:
        return min(hi, max(lo, (t - a) / b))

    low = min(a + lo * b for a, b in cost.values())
    high = max(a + hi * b for a, b in cost.values())
    for _ in range(200):  # bisection: the sum of shares grows with t
        mid = (low + high) / 2
        if sum(share(a, b, mid) for a, b in cost.values()) < total:
            low = mid
        else:
            high = mid
    return {slot: share(a, b, high) for slot, (a, b) in cost.items()}


def _finish(shares: Mapping[int, float], cost: Mapping[int, tuple[float, float]]) -> float:
    """When the last slot with a share would finish."""
    return max((cost[s][0] + n * cost[s][1] for s, n in shares.items() if n > 0), default=0.0)


def _move(
    layout: Mapping[int, tuple[C, ...]], targets: Mapping[int, float]
) -> dict[int, tuple[C, ...]]:
    """Whole chunks moved so each slot is as near its target as chunks allow.

    A slot over its target gives up chunks from its end (the last moved in go first)
    while that brings it nearer and it keeps one, a slot sized to nothing all of them; the freed
    chunks, largest first, each go to the slot with a share furthest below its target.
    """
    slots = {s: list(cs) for s, cs in layout.items()}
    pool: list[C] = []
    for s, cs in slots.items():
        while cs and (targets[s] <= 0 or len(cs) > 1
                      and _samples(cs) - targets[s] > max(0, cs[-1].samples) / 2):
            pool.append(cs.pop())
    pool.sort(key=lambda c: -max(0, c.samples))  # stable: ties keep their order
    taking = [s for s in slots if targets[s] > 0] or list(slots)
    for c in pool:
        s = max(taking, key=lambda s: (targets[s] - _samples(slots[s]), -s))
        slots[s].append(c)
    for s in taking:  # one that takes part and got nothing: a chunk from the most over
        donors = [d for d in slots if len(slots[d]) > 1]
        if not slots[s] and targets[s] > 0 and donors:
            d = max(donors, key=lambda d: (_samples(slots[d]) - targets[d], -d))
            slots[s].append(slots[d].pop())
    return {s: tuple(cs) for s, cs in slots.items()}


def _times(
    layout: Mapping[int, Sequence[ChunkLike]], cost: Mapping[int, tuple[float, float]]
) -> dict[int, float]:
    """Each slot's predicted seconds; 0 for a slot with no sample (it sits the round out)."""
    return {s: cost[s][0] + n * cost[s][1] if (n := _samples(cs)) > 0 else 0.0
            for s, cs in layout.items()}
