"""Byzantine robustness on digits: 10 clients, 3 of them faulty.

Faulty clients train honestly, then send ``g - 10 * (w - g)`` (neg10), ``g + N(0, 1)``
(noise) or all-zero weights (zero). Robust rules must end within 2 points of the
all-honest FedAvg run; plain FedAvg must fall far below it under neg10 and noise. Under
zero it only loses a few points (a linear model's argmax is scale-invariant), which the
test prints but does not call "far".
"""

import time

import pytest
import torch

from tests.training.helpers import Attack, client_chunks, run_federated
from training import aggregate, datasets, local, models

SPEC = models.ModelSpec.from_mapping({"name": "logreg", "params": {"in_features": 64}})
PARAMS = local.TrainParams(epochs=2, batch_size=16, lr=0.05, momentum=0.9, threads=1)
ROUNDS = 20
TAIL = 3  # accuracy at the end = mean of the last rounds (360 test images are noisy)
ROBUST = {
    "median": aggregate.RuleConfig(name="median", f=3),
    "trimmed_mean": aggregate.RuleConfig(name="trimmed_mean", f=3, trim=0.3),
    "multi_krum": aggregate.RuleConfig(name="multi_krum", f=3),
}


def _tail(accs: list[float]) -> float:
    return sum(accs[-TAIL:]) / TAIL


def _neg10(g: dict, w: dict, r: int) -> dict:
    return {k: g[k] - 10 * (w[k] - g[k]) for k in g}


def _noise(g: dict, w: dict, r: int) -> dict:
    gen = torch.Generator().manual_seed(r)
    return {k: g[k] + torch.randn(g[k].shape, generator=gen) for k in g}


def _zero(g: dict, w: dict, r: int) -> dict:
    return {k: torch.zeros_like(g[k]) for k in g}


ATTACKS: dict[str, Attack] = {"neg10": _neg10, "noise": _noise, "zero": _zero}


@pytest.fixture(scope="module")
def setup() -> tuple:
    d = datasets.load("digits")
    chunks = client_chunks(d, datasets.partition(d.train_y, 10, "iid", seed=0))
    honest = _tail(run_federated(SPEC, d, chunks, PARAMS, aggregate.RuleConfig(), rounds=ROUNDS))
    return d, chunks, honest


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_robust_rules_survive_three_faulty_clients(setup: tuple, attack: str) -> None:
    d, chunks, honest = setup
    t = time.perf_counter()

    def run(rule: aggregate.RuleConfig) -> float:
        return _tail(
            run_federated(
                SPEC, d, chunks, PARAMS, rule, rounds=ROUNDS, attackers=3, attack=ATTACKS[attack]
            )
        )

    fedavg = run(aggregate.RuleConfig())
    robust = {name: run(rule) for name, rule in ROBUST.items()}
    print(
        f"\n{attack}: honest={honest:.3f} fedavg={fedavg:.3f} "
        + " ".join(f"{k}={v:.3f}" for k, v in robust.items())
        + f" ({time.perf_counter() - t:.1f}s)"
    )
    for name, acc in robust.items():
        assert acc >= honest - 0.02, (name, acc, honest)
    if attack != "zero":
        assert fedavg < honest - 0.2, (fedavg, honest)
