"""The torch-free budget estimate agrees with torch where it can be exact."""

from __future__ import annotations

from typing import Any

import pytest

from training import budget, models
from training.errors import SpecError

SPECS: list[dict[str, Any]] = [
    {"name": "logreg", "params": {"in_features": 64}},
    {"name": "mlp", "params": {}},
    {"name": "mlp", "params": {"in_features": 64, "hidden": [7, 5, 3], "classes": 4}},
    {"name": "cnn", "params": {}},
    {"name": "cnn", "params": {"image_size": 8, "channels": 3, "dense": 16}},
    {"name": "char_lstm", "params": {"num_layers": 3, "hidden_size": 12}},
]


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s["name"])
def test_parameter_count_matches_torch(spec: dict[str, Any]) -> None:
    params, _, _ = budget.model_cost(spec["name"], spec["params"])
    assert params == models.parameter_count(models.ModelSpec.from_mapping(spec))


def test_sample_count_is_bounded_by_the_bytes_not_the_owners_claim() -> None:
    # 1,000 samples of 64 uint8 features, the smallest form a chunk stores them in
    cost = budget.estimate(SPECS[0], {"epochs": 3}, data_bytes=64 * 1000, samples=1)
    assert cost.sample_epochs == 3000


def test_the_first_limit_exceeded_is_named() -> None:
    cost = budget.estimate(SPECS[3], {"threads": 9}, data_bytes=0, samples=10)
    with pytest.raises(budget.OverBudget) as info:
        budget.check(cost, budget.Limits(max_threads=8))
    assert (info.value.reason, info.value.limit) == ("over_budget", "max_threads")
    with pytest.raises(SpecError):
        budget.estimate({"name": "nope"}, {}, data_bytes=0, samples=0)
