"""The big one: FedAvg, 4 clients, non-IID MNIST (Dirichlet 0.5), McMahan's 2NN."""

import time

import pytest

from tests.training.helpers import client_chunks, run_federated
from training import aggregate, datasets, local, models

pytestmark = pytest.mark.slow


def test_fedavg_2nn_reaches_97_percent_on_non_iid_mnist() -> None:
    t = time.perf_counter()
    d = datasets.load("mnist")
    spec = models.ModelSpec.from_mapping({"name": "mlp"})
    parts = datasets.partition(d.train_y, 4, "dirichlet", alpha=0.5, seed=0)
    params = local.TrainParams(epochs=1, batch_size=32, lr=0.05, momentum=0.9, threads=1)
    accs = run_federated(
        spec,
        d,
        client_chunks(d, parts),
        params,
        aggregate.RuleConfig(),
        rounds=20,
        target=0.97,
    )
    print(
        f"\nMNIST 2NN FedAvg: {[round(a, 4) for a in accs]} "
        f"in {time.perf_counter() - t:.1f}s ({len(accs)} rounds)"
    )
    assert accs[-1] >= 0.97
