"""Proof of useful work: pure decisions of redundancy, spot checks and quarantine.

See docs/verification.md for the design and the measured figures. Nothing here
does I/O or touches tensors: the distances come from ``protocols.job.assess.replica_distance``.

- Every task carries a *nonce* the owner derives from a secret of its own, the job,
  the round and the slot (:func:`task_nonce`); the trainer seeds its data order
  with :func:`task_seed`. Both replicas of a slot get the same nonce, so honest
  replicas agree; an update copied from another slot was trained under another
  nonce on other data and is out of line with both its replica and the owner's
  re-run of the task.
- :func:`plan` picks which slots of a round are redundant and which the owner
  checks itself, with an unpredictable random source (a trainer cannot tell).
- :func:`judge` turns distances into agreed peers and outliers.
- :func:`quarantined` says who has not yet earned full weight.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

DEFAULT_TOLERANCE = 1e-3
"""Largest relative L2 distance of two updates still taken as the same work
(docs/verification.md has the honest-replica figures it was chosen from)."""


def task_nonce(secret: bytes, job_id: str, round: int, slot: int) -> bytes:
    """The 16-byte nonce of ``slot``'s task in ``round`` (the same for its replicas)."""
    msg = f"{job_id}/{round}/{slot}".encode()
    return hmac.new(secret, msg, hashlib.sha256).digest()[:16]


def task_seed(seed: int, nonce: bytes) -> int:
    """The training seed of a task: the job's ``seed`` bound to the task's ``nonce``."""
    digest = hashlib.sha256(seed.to_bytes(8, "big", signed=True) + nonce).digest()
    return int.from_bytes(digest[:8], "big") & (2**63 - 1)


@dataclass(frozen=True)
class Plan:
    """Which slots of a round are trained twice, and which the owner re-runs."""

    redundant: frozenset[int]
    spot: frozenset[int]


def plan(
    slots: Sequence[int], redundancy: float, spot_rate: float, rng: random.Random
) -> Plan:
    """Choose the redundant and the spot-checked slots of a round.

    ``ceil(redundancy * len(slots))`` slots are redundant; each other slot is
    spot-checked with probability ``spot_rate``.

    ``rng`` should be ``random.SystemRandom()`` in an owner: a trainer must not be
    able to predict which of its tasks are checked.
    """
    n = math.ceil(redundancy * len(slots) - 1e-9) if redundancy > 0 else 0
    redundant = frozenset(rng.sample(list(slots), min(n, len(slots))))
    spot = frozenset(s for s in slots if s not in redundant and rng.random() < spot_rate)
    return Plan(redundant, spot)


def judge(
    peers: Sequence[str],
    distance: Callable[[str, str], float],
    tolerance: float,
    reference: Mapping[str, float] | None = None,
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Split ``peers`` (updates of one task) into (agreed, outliers).

    With ``reference`` (each peer's distance to the owner's own re-run) a peer is in
    line when within ``tolerance`` of it. Without, the closest pair within
    ``tolerance`` anchors the group: a peer is in line when within ``tolerance`` of
    one of that pair, an outlier otherwise. No pair within tolerance: ``((), ())``,
    undecided (two disagreeing replicas: an arbiter is needed).
    """
    if reference is not None:
        agreed = tuple(p for p in peers if reference.get(p, math.inf) <= tolerance)
        return agreed, tuple(p for p in peers if p not in agreed)
    pairs = sorted(
        (distance(a, b), a, b) for i, a in enumerate(peers) for b in peers[i + 1 :]
    )
    if not pairs or pairs[0][0] > tolerance:
        return (), ()
    _, a, b = pairs[0]
    agreed = tuple(
        p
        for p in peers
        if p in (a, b) or min(distance(p, a), distance(p, b)) <= tolerance
    )
    return agreed, tuple(p for p in peers if p not in agreed)


def against_rerun(
    reference: Mapping[str, float], tolerance: float, charge_above: float
) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """Judge peers by their distance to the owner's own re-run: (in line, cheated, unsure).

    In line: within ``tolerance``. Cheated: farther than ``charge_above``. Unsure:
    between the two; kept unverified and charged nothing, since a trainer on another
    device (a GPU) does not compute bit for bit what the owner's CPU does.
    """
    peers = sorted(reference)
    agreed = tuple(p for p in peers if reference[p] <= tolerance)
    cheated = tuple(p for p in peers if reference[p] > max(charge_above, tolerance))
    unsure = tuple(p for p in peers if p not in agreed and p not in cheated)
    return agreed, cheated, unsure


def quarantined(peers: Iterable[str], verified: Mapping[str, int], needed: int) -> set[str]:
    """The ``peers`` with fewer than ``needed`` accepted and verified contributions."""
    return {p for p in peers if verified.get(p, 0) < needed}


def weight(samples: int, share: float, *, quarantined: bool, verified: bool,
           quarantine_weight: float) -> float:
    """An accepted update's FedAvg weight.

    Its share of the slot's ``samples``, times ``quarantine_weight`` when its
    trainer is quarantined and the update was not verified.
    """
    w = samples * share
    return w * quarantine_weight if quarantined and not verified else w
