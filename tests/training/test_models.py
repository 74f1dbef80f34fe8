import pytest
import torch

from training import models
from training.errors import SpecError


def test_cnn_has_mcmahan_parameter_count() -> None:
    spec = models.ModelSpec.from_mapping({"name": "cnn"})
    assert models.parameter_count(spec) == 1_663_370


def test_mlp_default_is_2nn() -> None:
    spec = models.ModelSpec.from_mapping({"name": "mlp"})
    assert spec.params["hidden"] == (200, 200)
    assert models.parameter_count(spec) == 784 * 200 + 200 + 200 * 200 + 200 + 200 * 10 + 10


@pytest.mark.parametrize(
    "spec",
    [
        {"name": "logreg", "params": {"in_features": 64}},
        {"name": "mlp", "params": {"in_features": 64, "hidden": [32]}},
        {"name": "cnn", "params": {"image_size": 8}},
        {"name": "cnn"},
        {"name": "char_lstm", "params": {"seq_len": 16}},
    ],
)
def test_every_architecture_takes_its_declared_input(spec: dict) -> None:
    s = models.ModelSpec.from_mapping(spec)
    dtype = torch.int64 if s.input_dtype == "int64" else torch.float32
    x = torch.zeros((3, *s.input_shape), dtype=dtype)
    assert models.build(s)(x).shape == (3, s.classes)
    assert models.ModelSpec.from_mapping(s.to_mapping()) == s


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"name": "resnet"}, "name"),
        ({"name": None}, "name"),
        ({"name": "mlp", "params": {"hidden": []}}, "params.hidden"),
        ({"name": "mlp", "params": {"hidden": [0]}}, "params.hidden"),
        ({"name": "mlp", "params": {"hidden": "200"}}, "params.hidden"),
        ({"name": "mlp", "params": {"classes": True}}, "params.classes"),
        ({"name": "mlp", "params": {"classes": 1}}, "params.classes"),
        ({"name": "logreg", "params": {"in_features": 2.5}}, "params.in_features"),
        ({"name": "logreg", "params": {"evil": 1}}, "params.evil"),
        ({"name": "cnn", "params": {"image_size": 30}}, "params.image_size"),
        ({"name": "cnn", "params": []}, "params"),
        ({"name": "cnn", "code": "import os"}, "code"),
    ],
)
def test_bad_spec_is_a_clear_error(spec: dict, field: str) -> None:
    with pytest.raises(SpecError) as info:
        models.ModelSpec.from_mapping(spec)
    assert info.value.field == field


def test_spec_is_frozen() -> None:
    s = models.ModelSpec.from_mapping({"name": "logreg"})
    with pytest.raises(TypeError):
        s.params["classes"] = 3  # type: ignore[index]
