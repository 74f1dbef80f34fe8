"""Aggregation benchmark: FedAvg vs a memory-bandwidth baseline, robust rules, local epochs.

Run: ``.venv/bin/python bench/aggregate.py [--k 10] [--p 25000000] [--reps 5] [--threads N]``

Everything here is memory-bound; on a shared, oversubscribed machine ``--threads 1``
avoids OpenMP barrier stalls and gives steadier (often better) figures.

1. Baseline: sum K preallocated float32 buffers of P elements in place with torch
   (``acc.add_(buf)``, K - 1 passes): what memory bandwidth allows.
2. The project's FedAvg (``training.aggregate.aggregate``) over K updates given as real
   state dicts (transformer-like tensor shapes) totalling P elements.
3. Median, trimmed mean (trim 0.2) and multi-Krum (f = 3) on the same updates.
4. One local epoch of the 2NN and of the CNN on 15,000 MNIST samples.

Baseline and FedAvg run interleaved, ``--reps`` times each after one warm-up, and
the best time of each is kept (robust rules: one run each). The
last line is ``fedavg_ratio_vs_baseline=X median_over_fedavg=Y`` with
X = baseline s / FedAvg s (target >= 0.7) and Y = median s / FedAvg s (target <= 10).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch

from training import aggregate, datasets, local, models, weights

BLOCK_SHAPES = [
    (3072, 1024),
    (3072,),
    (1024, 1024),
    (1024,),
    (4096, 1024),
    (4096,),
    (1024, 4096),
    (1024,),
    (1024,),
    (1024,),
]


def state_shapes(p: int) -> list[tuple[int, ...]]:
    """Transformer-like tensor shapes totalling exactly ``p`` elements."""
    shapes: list[tuple[int, ...]] = []
    left = p
    while left > 0:
        for s in BLOCK_SHAPES:
            n = 1
            for d in s:
                n *= d
            if n > left:
                shapes.append((left,))
                left = 0
                break
            shapes.append(s)
            left -= n
    return shapes


def once(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def epoch_seconds(name: str, d: datasets.Dataset) -> float:
    spec = models.ModelSpec.from_mapping({"name": name})
    chunks = datasets.make_chunks(d.train_x, d.train_y, 5000)
    params = local.TrainParams(epochs=1, batch_size=32, lr=0.05, momentum=0.9)
    res = local.train(spec, weights.initial(spec, 0), chunks, params)
    return res.metrics.seconds


def random_updates(p: int, k: int) -> tuple[dict[str, torch.Tensor], list[aggregate.Update]]:
    """A random global state of about ``p`` elements in a model's shapes, and ``k`` updates."""
    shapes = state_shapes(p)
    names = [f"layer{i}" for i in range(len(shapes))]
    g = {n: torch.randn(s) for n, s in zip(names, shapes, strict=True)}
    ups = [
        aggregate.Update(
            {n: torch.randn(s) for n, s in zip(names, shapes, strict=True)}, 1000 + i, f"u{i:02d}"
        )
        for i in range(k)
    ]
    largest = max(shapes, key=lambda s: s[0] * (s[1] if len(s) > 1 else 1))
    print(f"state dict: {len(shapes)} tensors, largest {largest}")
    return g, ups


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--k", type=int, default=10, help="updates")
    ap.add_argument("--p", type=int, default=25_000_000, help="elements per update")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    ap.add_argument("--skip-epochs", action="store_true")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    k, p = args.k, args.p
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, K={k}, P={p:,}")

    bufs = [torch.randn(p) for _ in range(k)]
    g, ups = random_updates(p, k)

    def baseline() -> None:
        acc = bufs[0]
        for b in bufs[1:]:
            acc.add_(b)

    def run(rule: aggregate.RuleConfig) -> Callable[[], object]:
        return lambda: aggregate.aggregate(g, ups, rule)

    # Interleaved, so that load from other processes hits both alike; best of reps.
    fedavg = run(aggregate.RuleConfig())
    baseline()
    fedavg()
    base_times, avg_times = [], []
    for _ in range(args.reps):
        base_times.append(once(baseline))
        avg_times.append(once(fedavg))
    t_base, t_avg = min(base_times), min(avg_times)
    gb = 3 * (k - 1) * p * 4 / 1e9
    print(f"baseline in-place sum: {t_base:.4f} s ({gb / t_base:.1f} GB/s effective)")
    print(f"fedavg: {t_avg:.4f} s")
    bufs.clear()
    t_med = once(run(aggregate.RuleConfig(name="median")))
    print(f"median: {t_med:.4f} s")
    t_trim = once(run(aggregate.RuleConfig(name="trimmed_mean", trim=0.2)))
    print(f"trimmed_mean(0.2): {t_trim:.4f} s")
    if k >= 9:
        t_krum = once(run(aggregate.RuleConfig(name="multi_krum", f=3)))
        print(f"multi_krum(f=3): {t_krum:.4f} s")
    g.clear()
    ups.clear()

    if not args.skip_epochs:
        d = datasets.load("mnist", limit=15_000)
        print(f"local epoch, 2NN, 15,000 MNIST samples, batch 32: {epoch_seconds('mlp', d):.2f} s")
        print(f"local epoch, CNN, 15,000 MNIST samples, batch 32: {epoch_seconds('cnn', d):.2f} s")

    print(f"fedavg_ratio_vs_baseline={t_base / t_avg:.3f} median_over_fedavg={t_med / t_avg:.3f}")


if __name__ == "__main__":
    main()
