"""Server-side aggregation: pure functions, records in, records out, no I/O.

:func:`aggregate` takes the global weights, the round's (already validated) updates,
a :class:`RuleConfig` and the previous :class:`ServerState`, and returns the new
weights, the new state and the ids of the updates it used.

Rules and the faulty updates each tolerates (``n`` updates, ``f`` = ``RuleConfig.f``):

============  ===================================================  ==================
rule          result                                               needs / tolerates
============  ===================================================  ==================
fedavg        sample-weighted mean                                 n >= min_updates;
                                                                   tolerates 0
fedadam,      FedOpt (Reddi et al. 2021): the FedAvg delta is a     n >= min_updates;
fedyogi,      pseudo-gradient for a server Adam / Yogi / Adagrad    tolerates 0
fedadagrad    step with ``server_lr``, ``beta1``, ``beta2``, ``tau``
median        coordinate-wise median (unweighted; even n: mean      n >= 2f + 1;
              of the two middle values)                             tolerates f < n/2
trimmed_mean  coordinate-wise mean after dropping k = max(f,        n >= 2k + 1;
              floor(trim * n)) lowest and highest values            tolerates k
krum          the update with the lowest Krum score                 n >= 2f + 3
                                                                    (n > 2f + 2)
multi_krum    unweighted mean of the m (default n - f) updates      n >= 2f + 3 and
              with the lowest Krum scores                           m <= n - f
============  ===================================================  ==================

Robust rules ignore the claimed sample counts (a faulty peer could inflate them).
Every rule may add norm clipping (``clip_norm``: each delta ``u - g`` is scaled to at
most that L2 norm first) and, with clipping, central-DP Gaussian noise of standard
deviation ``noise_multiplier * clip_norm / n_used`` on the aggregate, drawn from a
generator seeded by ``(seed, round)`` (the std assumes no update weighs more than
``1 / n_used``; no privacy accounting is done here). Clipping bounds a faulty update's pull to
``clip_norm / n``; it does not remove it.

The updates are sorted by id first, so every rule is exactly invariant to their order;
ids must be unique. Work happens per parameter tensor on flat float32 views (no copies
of the inputs); the sample-weighted mean is ``K`` in-place ``add_`` passes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

import distro_schema
from training import catalogue, fedopt, robust
from training.errors import AggregationError, SpecError, TooFewUpdates
from training.fedopt import ServerState as ServerState  # aggregate() takes and returns it
from training.fedopt import StateDict

FEDOPT = catalogue.FEDOPT
RULES = catalogue.RULES


@dataclass(frozen=True)
class Update:
    """One trainer's update.

    Attributes:
        weights: FULL trained weights: a state dict with the global model's names and
            shapes, or one flat float32 tensor in the global state dict's order.
        samples: Claimed training samples (>= 1), the FedAvg weight.
        id: Unique id (e.g. the trainer's peer id or the blob's sha256).
    """

    weights: Mapping[str, torch.Tensor] | torch.Tensor
    samples: int
    id: str


@dataclass(frozen=True)
class RuleConfig(catalogue.RuleParams):
    """An aggregation rule with its settings and noise seed (see the module table).

    The settings and their bounds are :class:`training.catalogue.RuleParams`'s.

    Attributes:
        name: One of :data:`RULES`.
        seed: Noise seed (combined with the round number).
    """

    name: catalogue.Rule = "fedavg"
    seed: catalogue.Seed = 0

    def __post_init__(self) -> None:
        distro_schema.check(self, error=SpecError)
        problem = self.problem()
        if problem:
            raise SpecError(*problem)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> RuleConfig:
        """Build from an untrusted mapping; unknown keys or bad values raise SpecError."""
        return distro_schema.load(cls, data, error=SpecError)

    def trimmed(self, n: int) -> int:
        """Values trimmed from each side by trimmed_mean for ``n`` updates."""
        return max(self.f, math.floor(self.trim * n))

    def need(self, n: int) -> int:
        """Fewest updates this rule accepts when given ``n`` (see the module table)."""
        base = self.min_updates
        if self.name == "median":
            return max(base, 2 * self.f + 1)
        if self.name == "trimmed_mean":
            return max(base, 2 * self.trimmed(n) + 1)
        if self.name in ("krum", "multi_krum"):
            extra = (self.m or 0) + self.f if self.name == "multi_krum" else 0
            return max(base, 2 * self.f + 3, extra)
        return base


@dataclass(frozen=True)
class AggregateResult:
    """Outcome of :func:`aggregate`.

    Attributes:
        weights: New global weights (new tensors, float32, the global's names/shapes).
        state: State to pass to the next round.
        used_ids: Ids of the updates that entered the result, sorted.
    """

    weights: StateDict
    state: ServerState
    used_ids: tuple[str, ...]


def _canonical(
    global_weights: Mapping[str, torch.Tensor], updates: Sequence[Update]
) -> list[tuple[Update, StateDict]]:
    ids = [u.id for u in updates]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise AggregationError("duplicate_id", dup)
    out = []
    sizes = [t.numel() for t in global_weights.values()]
    for up in sorted(updates, key=lambda u: u.id):
        if isinstance(up.samples, bool) or not isinstance(up.samples, int) or up.samples < 1:
            raise AggregationError("samples", up.id, f"samples must be >= 1, got {up.samples}")
        if isinstance(up.weights, torch.Tensor):
            w = up.weights
            if w.dim() != 1 or w.numel() != sum(sizes):
                raise AggregationError("shape", up.id, f"flat tensor of {w.numel()} elements")
            parts = dict(zip(global_weights, torch.split(w.to(torch.float32), sizes), strict=True))
        else:
            if set(up.weights) != set(global_weights):
                raise AggregationError("names", up.id)
            parts = {}
            for name, g in global_weights.items():
                t = up.weights[name]
                if t.shape != g.shape:
                    raise AggregationError("shape", up.id, f"{name}: {tuple(t.shape)}")
                parts[name] = t.to(torch.float32).contiguous().view(-1)
        out.append((up, parts))
    return out


def aggregate(
    global_weights: Mapping[str, torch.Tensor],
    updates: Sequence[Update],
    rule: RuleConfig,
    state: ServerState | None = None,
) -> AggregateResult:
    """Aggregate one round's validated updates with ``rule``.

    Args:
        global_weights: The round's global model (what trainers started from).
        updates: Full trained weights from trainers; order does not matter.
        rule: Rule and settings.
        state: Previous round's state (FedOpt moments, round number), or None.

    Raises:
        TooFewUpdates: Fewer updates than ``rule.need(n)``.
        AggregationError: Duplicate ids, bad sample counts, names/shapes unlike the
            global model, or a ``state`` of another rule or size.
    """
    g = {k: v.detach().to(torch.float32).contiguous() for k, v in global_weights.items()}
    gflat = {k: v.view(-1) for k, v in g.items()}
    ups = _canonical(g, updates)
    n = len(ups)
    if n < rule.need(n):
        raise TooFewUpdates(rule.name, n, rule.need(n))
    state = _check_state(state, rule, sum(t.numel() for t in g.values()))
    scale = _clip_factors(gflat, [p for _, p in ups], rule.clip_norm)
    used = list(range(n))
    if rule.name in ("median", "trimmed_mean"):
        fn = robust.median if rule.name == "median" else robust.trimmed_mean(rule.trimmed(n))
        new = {
            k: robust.columnwise(gflat[k], [p[k] for _, p in ups], scale, fn).view(g[k].shape)
            for k in g
        }
    else:
        if rule.name in ("krum", "multi_krum"):
            gm = robust.gram(list(gflat.values()), [[p[k] for _, p in ups] for k in g], scale)
            scores = robust.krum_scores(gm, rule.f)
            keep = 1 if rule.name == "krum" else (rule.m or n - rule.f)
            used = sorted(torch.argsort(scores, stable=True)[:keep].tolist())
            coef = [1.0 / len(used)] * len(used)
        else:
            total = sum(ups[i][0].samples for i in used)
            coef = [ups[i][0].samples / total for i in used]
        if scale is not None:
            coef = [c * float(scale[i]) for c, i in zip(coef, used, strict=True)]
        new = _weighted(g, gflat, [ups[i][1] for i in used], coef)
    if rule.noise_multiplier and rule.clip_norm is not None:
        _add_noise(new, rule.noise_multiplier * rule.clip_norm / len(used), rule, state.round)
    if rule.name in FEDOPT:
        new = fedopt.server_step(g, new, state, rule.name, lr=rule.server_lr,
                                 beta1=rule.beta1, beta2=rule.beta2, tau=rule.tau)
    state.round += 1
    return AggregateResult(new, state, tuple(ups[i][0].id for i in used))


def _check_state(state: ServerState | None, rule: RuleConfig, size: int) -> ServerState:
    if state is None:
        return ServerState(rule.name)
    if state.rule != rule.name:
        raise AggregationError("state", detail=f"state of {state.rule!r}, rule {rule.name!r}")
    if state.m is not None and state.m.numel() != size:
        raise AggregationError("state", detail=f"moments of {state.m.numel()} != {size}")
    return ServerState(state.rule, state.round, state.m, state.v)


def _clip_factors(
    g: Mapping[str, torch.Tensor], parts: Sequence[Mapping[str, torch.Tensor]], clip: float | None
) -> torch.Tensor | None:
    if clip is None:
        return None
    norms = torch.stack(
        [
            torch.linalg.vector_norm(
                torch.stack([torch.linalg.vector_norm(p[k] - g[k]) for k in g])
            )
            for p in parts
        ]
    )
    return (clip / norms.clamp_min(1e-12)).clamp(max=1.0)


def _weighted(
    g: Mapping[str, torch.Tensor],
    gflat: Mapping[str, torch.Tensor],
    parts: Sequence[Mapping[str, torch.Tensor]],
    coef: Sequence[float],
) -> StateDict:
    # Clipped coefficients sum below 1: the rest of the weight stays on the global.
    rest = 1.0 - math.fsum(coef)
    out = {}
    for k in g:
        acc = torch.mul(parts[0][k], coef[0])
        for p, c in zip(parts[1:], coef[1:], strict=True):
            acc.add_(p[k], alpha=c)
        if abs(rest) > 1e-12:
            acc.add_(gflat[k], alpha=rest)
        out[k] = acc.view(g[k].shape)
    return out


def _add_noise(new: StateDict, std: float, rule: RuleConfig, round_: int) -> None:
    gen = torch.Generator().manual_seed((rule.seed * 1_000_003 + round_) % 2**63)
    for t in new.values():
        t.add_(torch.randn(t.shape, generator=gen), alpha=std)
