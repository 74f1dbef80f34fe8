"""Seeded client partitions for experiments: IID, Dirichlet label skew, shards."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from training.errors import SpecError

_DIRICHLET_TRIES = 100
_DIRICHLET_MIN_SAMPLES = 10


def partition(
    labels: NDArray[np.integer],
    n_clients: int,
    kind: str = "iid",
    *,
    alpha: float = 0.5,
    shards_per_client: int = 2,
    seed: int = 0,
) -> list[NDArray[np.int64]]:
    """Split sample indices among ``n_clients``; same arguments, same result.

    Args:
        labels: Label of every sample.
        n_clients: Number of clients.
        kind: ``"iid"`` (uniform shuffle, near-equal sizes), ``"dirichlet"`` (per class,
            client shares drawn from Dirichlet(alpha); redrawn, up to 100 times, until
            every client has at least ``min(10, n // n_clients)`` samples) or
            ``"shards"`` (McMahan: sort by label, cut into
            ``n_clients * shards_per_client`` shards, deal them out at random).
        alpha: Dirichlet concentration; smaller is more skewed.
        shards_per_client: Shards per client for ``"shards"``.
        seed: Seed of the numpy generator.

    Returns:
        One sorted int64 index array per client; together they cover every sample once.

    Raises:
        SpecError: Unknown ``kind`` or out-of-range argument.
    """
    n = len(labels)
    if not 1 <= n_clients <= max(n, 1):
        raise SpecError("n_clients", f"must be in [1, {n}], got {n_clients}")
    rng = np.random.default_rng(seed)
    if kind == "iid":
        parts = np.array_split(rng.permutation(n), n_clients)
    elif kind == "dirichlet":
        if not alpha > 0:
            raise SpecError("alpha", f"must be > 0, got {alpha}")
        parts = _dirichlet(np.asarray(labels), n_clients, alpha, rng)
    elif kind == "shards":
        shards = n_clients * shards_per_client
        if not 1 <= shards <= n:
            raise SpecError("shards_per_client", f"{shards} shards for {n} samples")
        pieces = np.array_split(np.argsort(labels, kind="stable"), shards)
        order = rng.permutation(shards)
        parts = [np.concatenate([pieces[s] for s in order[c::n_clients]]) for c in range(n_clients)]
    else:
        raise SpecError("kind", f"unknown partition {kind!r}; use iid, dirichlet or shards")
    return [np.sort(p).astype(np.int64) for p in parts]


def _dirichlet(
    labels: NDArray[np.generic], n_clients: int, alpha: float, rng: np.random.Generator
) -> list[NDArray[np.int64]]:
    floor = min(_DIRICHLET_MIN_SAMPLES, len(labels) // n_clients)
    classes = np.unique(labels)
    parts: list[list[NDArray[np.int64]]] = []
    for _ in range(_DIRICHLET_TRIES):
        parts = [[] for _ in range(n_clients)]
        for c in classes:
            idx = rng.permutation(np.flatnonzero(labels == c))
            shares = rng.dirichlet(np.full(n_clients, alpha))
            cuts = (np.cumsum(shares)[:-1] * len(idx)).astype(np.int64)
            for client, piece in enumerate(np.split(idx, cuts)):
                parts[client].append(piece)
        if min(sum(len(p) for p in client) for client in parts) >= floor:
            break
    return [np.concatenate(client) for client in parts]
