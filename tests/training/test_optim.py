"""training.optim against torch.optim: the same weights, bit for bit, and no torch._dynamo."""

import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest
import torch

from training import optim


def _run(make: Callable[[list[torch.Tensor]], Any], steps: int = 5) -> list[torch.Tensor]:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.ReLU(), torch.nn.Linear(5, 3))
    x, y = torch.randn(16, 6), torch.randint(0, 3, (16,))
    opt = make(list(net.parameters()))
    for _ in range(steps):
        loss = torch.nn.functional.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return [t.detach().clone() for t in net.parameters()]


@pytest.mark.parametrize(
    "args",
    [
        {"lr": 0.1},
        {"lr": 0.05, "momentum": 0.9},
        {"lr": 0.05, "momentum": 0.9, "weight_decay": 0.01},
    ],
)
def test_sgd_matches_torch_bit_for_bit(args: dict[str, float]) -> None:
    ours = _run(lambda p: optim.SGD(p, **args))
    theirs = _run(lambda p: torch.optim.SGD(p, **args, foreach=False))
    assert all(torch.equal(a, b) for a, b in zip(ours, theirs, strict=True))


@pytest.mark.parametrize("args", [{"lr": 0.01}, {"lr": 0.003, "weight_decay": 0.1}])
def test_adam_matches_torch_bit_for_bit(args: dict[str, float]) -> None:
    ours = _run(lambda p: optim.Adam(p, **args))
    theirs = _run(lambda p: torch.optim.Adam(p, **args, foreach=False))
    assert all(torch.equal(a, b) for a, b in zip(ours, theirs, strict=True))
    untrained = _run(lambda p: optim.Adam(p, **args), steps=0)
    assert not any(torch.equal(a, b) for a, b in zip(ours, untrained, strict=True))


def test_local_training_does_not_import_torch_dynamo() -> None:
    # A trainer process stays lean: torch.optim would pull in torch._dynamo and sympy.
    code = (
        "import sys, numpy as np\n"
        "from training import datasets, local, models, weights\n"
        "s = models.ModelSpec.from_mapping({'name': 'logreg', 'params': {'in_features': 4}})\n"
        "x = np.zeros((8, 4), np.uint8); y = np.arange(8) % 2\n"
        "for o in ('sgd', 'adam'):\n"
        "    local.train(s, weights.initial(s, 0), datasets.make_chunks(x, y, 4),\n"
        "                local.TrainParams(optimizer=o))\n"
        "assert 'torch._dynamo' not in sys.modules and 'sympy' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)
