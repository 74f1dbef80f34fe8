"""Shared helpers for training tests: an in-process federated loop (no network)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from training import aggregate, datasets, local, models, weights

Attack = Callable[[dict[str, torch.Tensor], dict[str, torch.Tensor], int], dict[str, torch.Tensor]]


def client_chunks(
    d: datasets.Dataset, parts: Sequence[np.ndarray], max_samples: int = 5000
) -> list[list[bytes]]:
    return [datasets.make_chunks(d.train_x[p], d.train_y[p], max_samples) for p in parts]


def run_federated(
    spec: models.ModelSpec,
    d: datasets.Dataset,
    chunks: Sequence[Sequence[bytes]],
    params: local.TrainParams,
    rule: aggregate.RuleConfig,
    *,
    rounds: int,
    attackers: int = 0,
    attack: Attack | None = None,
    target: float | None = None,
    seed: int = 0,
) -> list[float]:
    """Run FedAvg-style rounds in-process; returns test accuracy after each round.

    The last ``attackers`` clients train honestly, then replace their update with
    ``attack(global, honest_update, round)``.
    """
    g_bytes = weights.initial(spec, seed)
    state = None
    accs: list[float] = []
    for r in range(rounds):
        g = weights.decode(g_bytes, spec)
        ups = []
        for c, client in enumerate(chunks):
            p = local.TrainParams(**{**params.__dict__, "seed": seed * 1000 + r * 100 + c})
            res = local.train(spec, g_bytes, client, p)
            w = weights.decode(res.weights, spec)
            if attack is not None and c >= len(chunks) - attackers:
                w = attack(g, w, r)
            ups.append(aggregate.Update(w, res.metrics.samples, f"client-{c:02d}"))
        out = aggregate.aggregate(g, ups, rule, state)
        state = out.state
        g_bytes = weights.encode(out.weights)
        accs.append(local.evaluate(spec, g_bytes, d.test_x, d.test_y)[1])
        if target is not None and accs[-1] >= target:
            break
    return accs
