"""Column-wise kernels for the robust rules: median, trimmed mean, Krum scores.

The updates are never stacked into one ``K x P`` matrix: each kernel walks the
parameters in column blocks small enough to stay in cache, stacks the ``K`` slices of
one block (``B x K``, the sort axis contiguous), and writes its result into the output.
All arithmetic is torch ops on whole blocks; Python only loops over blocks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import torch

BLOCK = 1 << 17
"""Columns per block (10 updates x 131,072 float32 = 5 MiB)."""

Flat = Sequence[torch.Tensor]


def _blocks(
    g: torch.Tensor, rows: Flat, scale: torch.Tensor | None
) -> Iterator[tuple[int, int, torch.Tensor]]:
    """Yield ``(start, end, block)`` with block ``(end - start, K)`` of (clipped) values."""
    n = g.numel()
    for s in range(0, n, BLOCK):
        e = min(n, s + BLOCK)
        m = torch.stack([r[s:e] for r in rows], dim=1)
        if scale is not None:
            gs = g[s:e].unsqueeze(1)
            m = gs + (m - gs) * scale
        yield s, e, m


def columnwise(
    g: torch.Tensor,
    rows: Flat,
    scale: torch.Tensor | None,
    fn: Callable[[torch.Tensor], torch.Tensor],
) -> torch.Tensor:
    """Apply ``fn`` (block ``(B, K)`` -> ``(B,)``) over all columns; returns a new tensor.

    Args:
        g: Flat global tensor (one parameter tensor, flattened).
        rows: The updates' matching flat tensors.
        scale: Per-update clip factors ``(K,)`` applied to ``row - g``, or None.
        fn: The reduction.
    """
    out = torch.empty_like(g)
    for s, e, m in _blocks(g, rows, scale):
        out[s:e] = fn(m)
    return out


def median(m: torch.Tensor) -> torch.Tensor:
    """Coordinate-wise median; for an even count, the mean of the two middle values."""
    k = m.shape[1]
    srt = m.sort(dim=1).values
    if k % 2:
        return srt[:, k // 2]
    return (srt[:, k // 2 - 1] + srt[:, k // 2]) * 0.5


def trimmed_mean(trim: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """Coordinate-wise mean after dropping the ``trim`` lowest and highest values."""

    def fn(m: torch.Tensor) -> torch.Tensor:
        if trim == 0:
            return m.mean(dim=1)
        k = m.shape[1]
        return m.sort(dim=1).values[:, trim : k - trim].mean(dim=1)

    return fn


def gram(gs: Flat, rows_by_tensor: Sequence[Flat], scale: torch.Tensor | None) -> torch.Tensor:
    """Gram matrix ``D D^T`` of the (clipped) deltas ``D = rows - g``, in float64.

    Args:
        gs: Flat global tensors, one per parameter tensor.
        rows_by_tensor: For each parameter tensor, the updates' matching flat tensors.
        scale: Per-update clip factors, or None.
    """
    k = len(rows_by_tensor[0])
    acc = torch.zeros(k, k, dtype=torch.float64)
    for g, rows in zip(gs, rows_by_tensor, strict=True):
        for s, e, m in _blocks(g, rows, scale):
            d = (m - g[s:e].unsqueeze(1)).to(torch.float64)
            acc += d.T @ d
    return acc


def krum_scores(gram_matrix: torch.Tensor, f: int) -> torch.Tensor:
    """Krum score of each update: sum of squared distances to its ``n - f - 2`` nearest.

    Args:
        gram_matrix: ``(n, n)`` Gram matrix of the deltas.
        f: Faulty updates tolerated (needs ``n > 2f + 2``).
    """
    sq = gram_matrix.diagonal()
    dist = (sq.unsqueeze(0) + sq.unsqueeze(1) - 2 * gram_matrix).clamp_min(0)
    n = dist.shape[0]
    dist.fill_diagonal_(float("inf"))
    nearest = n - f - 2
    return dist.sort(dim=1).values[:, :nearest].sum(dim=1)
