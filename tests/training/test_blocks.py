"""Declarative models: blocks checked and costed without torch, built with it, alike."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from examples.make_data import write_table, write_text
from protocols.job import compute, jobdata
from protocols.job.spec import from_mapping
from training import blocks, budget, models, weights
from training.errors import SpecError


def _custom(layers: list[dict[str, Any]], in_shape: list[int], tokens: bool = False) -> Any:
    return models.ModelSpec.from_mapping(
        {"name": "custom", "params": {"layers": layers, "in_shape": in_shape, "tokens": tokens}}
    )


@st.composite
def image_stacks(draw: st.DrawFn) -> tuple[list[dict[str, Any]], list[int]]:
    side = draw(st.sampled_from([8, 12, 16]))
    ch = draw(st.sampled_from([1, 3]))
    layers: list[dict[str, Any]] = [{"type": "reshape", "shape": [ch, side, side]}]
    for _ in range(draw(st.integers(1, 2))):
        k = draw(st.sampled_from([1, 3, 5]))
        layers.append({"type": "conv", "out": draw(st.integers(1, 8)), "kernel": k,
                       "padding": k // 2, "stride": draw(st.integers(1, 2))})
        layers.append({"type": draw(st.sampled_from(["relu", "gelu", "tanh", "layernorm"]))})
    if draw(st.booleans()):
        layers.append({"type": draw(st.sampled_from(["maxpool", "avgpool"])), "kernel": 2})
    layers += [{"type": "flatten"}, {"type": "dropout", "p": 0.1}]
    for _ in range(draw(st.integers(0, 2))):
        layers += [{"type": "linear", "out": draw(st.integers(1, 32))}, {"type": "sigmoid"}]
    layers.append({"type": "linear", "out": draw(st.integers(2, 10))})
    return layers, [ch * side * side]


@settings(max_examples=20, deadline=None)
@given(stack=image_stacks())
def test_torch_free_figures_match_the_built_model(stack: tuple[list[Any], list[int]]) -> None:
    layers, in_shape = stack
    spec = _custom(layers, in_shape)
    cost = spec.cost()
    module = models.build(spec)
    assert cost.params == sum(p.numel() for p in module.parameters())
    out = module(torch.zeros(2, *in_shape))
    assert tuple(out.shape) == (2, *cost.out_shape)
    assert budget.model_cost("custom", spec.to_mapping()["params"])[0] == cost.params


def test_sequence_blocks_match_torch() -> None:
    layers = [
        {"type": "embedding", "vocab": 256, "dim": 32, "positions": True},
        {"type": "transformer", "heads": 4, "ff": 64},
        {"type": "gru", "hidden": 24},
        {"type": "lstm", "hidden": 16, "layers": 2},
        {"type": "layernorm"},
        {"type": "last"},
        {"type": "linear", "out": 256},
    ]
    spec = _custom(layers, [12], tokens=True)
    module = models.build(spec)
    assert spec.cost().params == sum(p.numel() for p in module.parameters())
    assert module(torch.zeros(3, 12, dtype=torch.int64)).shape == (3, 256)
    # causal: what comes later in a window never changes an earlier position's output
    block = module[1]
    x = torch.randn(1, 6, 32)
    y = x.clone()
    y[0, 4:] += 1.0
    assert torch.allclose(block(x)[0, :4], block(y)[0, :4], atol=1e-5)


def test_linear_flops_are_two_per_multiply_add() -> None:
    cost = blocks.check([{"type": "linear", "out": 7}, {"type": "linear", "out": 3}], (5,), False)
    assert cost.flops == 2 * (5 * 7 + 7 * 3) and cost.params == 5 * 7 + 7 + 7 * 3 + 3


@pytest.mark.parametrize(
    ("layers", "in_shape", "tokens", "field", "words"),
    [
        ([{"type": "lambda"}], [4], False, "layers[0].type", "choose from"),
        ([{"type": "linear", "out": 3, "code": "x"}], [4], False, "layers[0].code", "unknown"),
        ([{"type": "linear"}], [4], False, "layers[0].out", "required"),
        ([{"type": "conv", "out": 2}], [64], False, "layers[0].type", "3-d"),
        ([{"type": "reshape", "shape": [2, 5, 5]}], [64], False, "layers[0].shape", "64"),
        ([{"type": "embedding", "vocab": 9, "dim": 4}, {"type": "transformer", "heads": 3}],
         [8], True, "layers[1].heads", "divide"),
        ([{"type": "linear", "out": 3}], [8], True, "layers[0].type", "embedding"),
        ([{"type": "linear", "out": 1.5}], [4], False, "layers[0].out", "integer"),
    ],
)
def test_bad_blocks_are_named(
    layers: list[Any], in_shape: list[int], tokens: bool, field: str, words: str
) -> None:
    with pytest.raises(SpecError) as info:
        blocks.check(layers, in_shape, tokens)
    assert info.value.field == field and words in info.value.detail


def test_catalogue_models_are_presets_of_the_same_blocks() -> None:
    for name in ("logreg", "mlp", "cnn", "char_lstm"):
        spec = models.ModelSpec.from_mapping({"name": name})
        same = _custom(spec.layers, list(spec.input_shape), spec.input_dtype == "int64")
        assert weights.layout(same) == weights.layout(spec)


def test_a_custom_job_fits_its_data_and_shows_its_cost(tmp_path: Path) -> None:
    table = write_table(tmp_path)
    job: dict[str, Any] = {
        "dataset": "table", "model": "custom", "trainers": 1,
        "model_params": {"layers": [{"type": "linear", "out": 16}, {"type": "relu"},
                                    {"type": "linear", "out": 3}]},
        "data": {"path": str(table), "target": "cultivar", "categorical": ["colour_band"],
                 "missing": "fill"},
    }
    seen = jobdata.check_data(from_mapping(job))
    assert seen["parameters"] == 16 * 16 + 16 + 16 * 3 + 3
    assert seen["flops_per_sample"] == 2 * (16 * 16 + 16 * 3) + 16  # one per ReLU output
    assert seen["activation_bytes_per_sample"] == 4 * (16 + 16 + 3)
    wrong = {**job, "model_params": {"layers": [{"type": "linear", "out": 4}]}}
    with pytest.raises(SpecError) as info:
        jobdata.check_data(from_mapping(wrong))
    assert info.value.field == "model_params.layers" and "3 classes" in info.value.detail
    with pytest.raises(SpecError) as info:
        from_mapping({**job, "model_params": {"layers": [{"type": "exec"}]}})
    assert info.value.field == "model_params.layers[0].type"


def test_initial_weights_are_checked_against_the_architecture(tmp_path: Path) -> None:
    text = write_text(tmp_path, sentences=200)
    job: dict[str, Any] = {
        "dataset": "text", "model": "custom", "trainers": 1, "limit": 500,
        "model_params": {"layers": [
            {"type": "embedding", "vocab": 256, "dim": 16, "positions": True},
            {"type": "transformer", "heads": 2}, {"type": "last"},
            {"type": "linear", "out": 256}]},
        "data": {"path": str(text), "seq_len": 8},
    }
    spec = from_mapping(job)
    prepared = jobdata.prepare(spec)
    good = tmp_path / "good.safetensors"
    good.write_bytes(weights.initial(prepared.model, 7))
    started = jobdata.prepare(from_mapping({**job, "initial_weights": str(good)}))
    assert started.initial == good.read_bytes() != prepared.initial
    bad = tmp_path / "bad.safetensors"
    state = weights.decode(good.read_bytes(), prepared.model)
    state["3.weight"] = torch.zeros(255, 16)
    bad.write_bytes(weights.encode(state))
    with pytest.raises(SpecError) as info:
        jobdata.check_data(from_mapping({**job, "initial_weights": str(bad)}))
    assert info.value.field == "initial_weights" and "3.weight" in info.value.detail
    # and the model trains: a few local steps lower the next-byte loss
    result = compute.train(
        json.dumps(prepared.model.to_mapping()),
        json.dumps({"epochs": 3, "lr": 0.01, "optimizer": "adam", "batch_size": 32}),
        prepared.initial, [b for b, _ in prepared.slots[0]], threads=1,
        should_stop=lambda: False,
    )
    before = jobdata.metrics_on_test(prepared, prepared.initial)["loss"]
    after = jobdata.metrics_on_test(prepared, result.weights)["loss"]
    assert after < before - 1.0 and np.isfinite(after)
