"""How far apart two updates of the same task are (redundancy and spot checks).

Two trainers given the same global model, data, seed and hyper-parameters, each
on one thread, produce the same weights up to floating-point differences between
machines. :func:`distance` measures how far apart they are as the relative L2
distance of their *deltas* from the global model:

    d(a, b) = ||(a - g) - (b - g)|| / max(||a - g||, ||b - g||)

0 for identical updates; about 1 or more for updates that went different ways
(another data order, another part of the data, another trainer's slot). The
figures measured on honest replicas, and the tolerance chosen from them, are in
docs/verification.md.
"""

from __future__ import annotations

import torch

from training import compress, models, weights


def _delta(spec: models.ModelSpec, g: dict[str, torch.Tensor], update: bytes) -> torch.Tensor:
    w = weights.decode(update, spec)
    return torch.cat([(w[k].double() - g[k].double()).flatten() for k in sorted(g)])


def distance(spec: models.ModelSpec, global_weights: bytes, a: bytes, b: bytes) -> float:
    """Relative L2 distance of the deltas of ``a`` and ``b`` from ``global_weights``.

    Raises:
        WeightsError: bytes that are not weights of ``spec``.
    """
    g = weights.decode(global_weights, spec)
    return compress.relative_distance(_delta(spec, g, a), _delta(spec, g, b))
