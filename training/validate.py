"""Update validation before aggregation: a verdict with a reason code per update.

Reason codes (``Verdict.reason``):

===========  ==============================================================
``ok``       accepted
``oversize`` blob longer than ``ValidationConfig.max_bytes`` (checked first)
``malformed`` not a safetensors blob
``names``    tensor names differ from the declared architecture
``shape``    a tensor's shape differs
``dtype``    a tensor's dtype differs
``non_finite`` NaN or Inf anywhere
``no_progress`` the global model returned (almost) unchanged: a delta norm of 0,
             or below ``min_progress`` times the round's median norm
``norm_outlier`` ``||update - global|| > norm_factor * round median norm``
``quality``  held-out loss worse than the global model's by more than
             ``quality_margin``
===========  ==============================================================

:func:`validate_round` runs this over a round and returns only accepted updates as
:class:`~training.aggregate.Update` records, so rejected ones never reach the aggregate.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from numpy.typing import NDArray

from training import models, weights
from training.aggregate import Update
from training.errors import SpecError, WeightsError
from training.local import evaluate

Heldout = tuple[NDArray[Any], NDArray[Any]]


@dataclass(frozen=True)
class ValidationConfig:
    """Validation thresholds.

    Attributes:
        norm_factor: Reject deltas whose L2 norm exceeds this times the round's median
            delta norm (a median of 0 disables the check).
        quality_margin: Reject updates whose held-out loss exceeds the global model's by
            more than this (absolute, in nats).
        max_bytes: Largest accepted update blob.
        min_progress: Reject deltas whose L2 norm is below this fraction of the
            round's median delta norm (a freeloader returning the model nearly as
            it came); a delta of exactly 0 is always refused.
    """

    norm_factor: float = 3.0
    min_progress: float = 0.01
    quality_margin: float = 0.5
    max_bytes: int = weights.DEFAULT_MAX_BYTES

    def __post_init__(self) -> None:
        if not 1 <= self.norm_factor < math.inf:
            raise SpecError("norm_factor", f"must be >= 1, got {self.norm_factor}")
        if not 0 <= self.quality_margin < math.inf:
            raise SpecError("quality_margin", f"must be >= 0, got {self.quality_margin}")
        if not 0 <= self.min_progress < 1:
            raise SpecError("min_progress", f"must be in [0, 1), got {self.min_progress}")
        if self.max_bytes < 1:
            raise SpecError("max_bytes", f"must be >= 1, got {self.max_bytes}")


@dataclass(frozen=True)
class Verdict:
    """Outcome of validating one update.

    Attributes:
        ok: Accepted.
        reason: Reason code (see module docstring), ``"ok"`` when accepted.
        detail: Human-readable detail.
    """

    ok: bool
    reason: str
    detail: str = ""


OK = Verdict(True, "ok")


def delta_norm(
    global_weights: Mapping[str, torch.Tensor], update: Mapping[str, torch.Tensor]
) -> float:
    """L2 norm of ``update - global`` over all tensors."""
    sq = math.fsum(
        float(torch.linalg.vector_norm(update[k].double() - g.double()) ** 2)
        for k, g in global_weights.items()
    )
    return math.sqrt(sq)


def check_structure(
    update: bytes | Mapping[str, torch.Tensor], *, spec: models.ModelSpec, cfg: ValidationConfig
) -> tuple[Verdict, dict[str, torch.Tensor] | None]:
    """Structural checks: size, format, names/shapes/dtypes, finiteness.

    Returns:
        ``(verdict, state)``; ``state`` is the decoded update when the verdict is ok.
    """
    if isinstance(update, bytes | bytearray):
        try:
            state = weights.decode(bytes(update), spec, max_bytes=cfg.max_bytes)
        except WeightsError as exc:
            return Verdict(False, exc.problem, exc.detail), None
    else:
        state = dict(update)
        for name, shape, dtype in weights.layout(spec):
            if name not in state or len(state) != len(weights.layout(spec)):
                return Verdict(False, "names", f"missing or extra tensors ({name})"), None
            if tuple(state[name].shape) != shape:
                return Verdict(False, "shape", f"{name}: {tuple(state[name].shape)}"), None
            if state[name].dtype != torch.float32 and dtype == "F32":
                return Verdict(False, "dtype", f"{name}: {state[name].dtype}"), None
    for name, t in state.items():
        if not bool(torch.isfinite(t).all()):
            return Verdict(False, "non_finite", f"{name} holds NaN or Inf"), None
    return OK, state


def check_progress(
    global_weights: Mapping[str, torch.Tensor],
    state: Mapping[str, torch.Tensor],
    *,
    median_norm: float | None,
    cfg: ValidationConfig,
) -> Verdict:
    """Refuse an update that changes nothing, or next to nothing beside the round's median."""
    norm = delta_norm(global_weights, state)
    if norm == 0 or (median_norm and norm < cfg.min_progress * median_norm):
        return Verdict(False, "no_progress", f"delta norm {norm:.4g}")
    return OK


def validate(
    global_weights: Mapping[str, torch.Tensor],
    update: bytes | Mapping[str, torch.Tensor],
    *,
    spec: models.ModelSpec,
    median_norm: float | None,
    heldout: Heldout | None,
    cfg: ValidationConfig,
    global_loss: float | None = None,
) -> Verdict:
    """Validate one update against the global model; never raises on bad input.

    Args:
        global_weights: The round's global model.
        update: The update as received (bytes) or decoded.
        spec: Declared architecture.
        median_norm: The round's median delta norm, or None to skip the norm check.
        heldout: Owner's held-out ``(x, y)``, or None to skip the quality check.
        cfg: Thresholds.
        global_loss: Held-out loss of the global model, computed when None.
    """
    verdict, state = check_structure(update, spec=spec, cfg=cfg)
    if state is None:
        return verdict
    verdict = check_progress(global_weights, state, median_norm=median_norm, cfg=cfg)
    if not verdict.ok:
        return verdict
    if median_norm:
        norm = delta_norm(global_weights, state)
        if norm > cfg.norm_factor * median_norm:
            return Verdict(
                False,
                "norm_outlier",
                f"norm {norm:.4g} > {cfg.norm_factor} x median {median_norm:.4g}",
            )
    if heldout is not None:
        if global_loss is None:
            global_loss = evaluate(spec, global_weights, *heldout)[0]
        loss = evaluate(spec, state, *heldout)[0]
        if loss > global_loss + cfg.quality_margin:
            return Verdict(
                False,
                "quality",
                f"held-out loss {loss:.4g} vs global "
                f"{global_loss:.4g} + margin {cfg.quality_margin}",
            )
    return OK


@dataclass(frozen=True)
class RoundValidation:
    """Outcome of :func:`validate_round`.

    Attributes:
        accepted: Accepted updates, ready for :func:`training.aggregate.aggregate`.
        rejected: ``(id, verdict)`` of every refused update.
    """

    accepted: list[Update]
    rejected: list[tuple[str, Verdict]]


def validate_round(
    global_weights: Mapping[str, torch.Tensor],
    received: Sequence[tuple[str, bytes | Mapping[str, torch.Tensor], int]],
    *,
    spec: models.ModelSpec,
    heldout: Heldout | None,
    cfg: ValidationConfig,
    checks: tuple[str, ...] = ("progress", "norm", "quality"),
) -> RoundValidation:
    """Validate a round's ``(id, update, samples)`` triples.

    The median delta norm is taken over the structurally valid updates; the global
    model's held-out loss is computed once. ``checks`` limits the checks beyond
    structure (``progress`` alone when the job turned validation off).
    """
    structural: list[tuple[str, dict[str, torch.Tensor], int]] = []
    rejected: list[tuple[str, Verdict]] = []
    for uid, blob, samples in received:
        verdict, state = check_structure(blob, spec=spec, cfg=cfg)
        if state is None:
            rejected.append((uid, verdict))
        else:
            structural.append((uid, state, samples))
    norms = [delta_norm(global_weights, s) for _, s, _ in structural]
    median = statistics.median(norms) if norms else None
    global_loss = evaluate(spec, global_weights, *heldout)[0] if heldout is not None else None
    accepted: list[Update] = []
    for uid, state, samples in structural:
        if "norm" in checks:
            verdict = validate(
                global_weights,
                state,
                spec=spec,
                median_norm=median,
                heldout=heldout if "quality" in checks else None,
                cfg=cfg,
                global_loss=global_loss,
            )
        else:
            verdict = check_progress(global_weights, state, median_norm=median, cfg=cfg)
        if verdict.ok:
            accepted.append(Update(state, samples, uid))
        else:
            rejected.append((uid, verdict))
    return RoundValidation(accepted, rejected)
