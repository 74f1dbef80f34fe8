"""LoRA: the base is frozen, an update carries only adapters, the owner expands,
aggregates and merges them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from examples.make_data import write_text
from protocols.job import assess, compute, jobdata
from protocols.job.spec import from_mapping
from training import budget, lora, models, weights
from training.errors import SpecError

LAYERS = [
    {"type": "embedding", "vocab": 256, "dim": 32, "positions": True},
    {"type": "transformer", "heads": 2},
    {"type": "last"},
    {"type": "linear", "out": 256},
]


def test_lora_update_is_adapters_only_and_merges_exactly(tmp_path: Path) -> None:
    text = write_text(tmp_path, 300)
    job = {"dataset": "text", "model": "custom", "trainers": 2, "limit": 1500,
           "model_params": {"layers": LAYERS}, "data": {"path": str(text), "seq_len": 8},
           "optimizer": "adam", "lr": 0.003, "batch_size": 32}
    full_job = jobdata.prepare(from_mapping(job))
    base = tmp_path / "base.safetensors"
    base.write_bytes(full_job.initial)
    spec = from_mapping({**job, "initial_weights": str(base),
                         "lora": {"rank": 2, "alpha": 4.0, "targets": ["attention"]}})
    p = jobdata.prepare(spec)
    # starts equal to the base: B is zero
    start = jobdata.metrics_on_test(p, p.initial)
    assert start == jobdata.metrics_on_test(full_job, base.read_bytes())
    update = compute.train(
        json.dumps(p.model.to_mapping()), compute.train_params_json(spec), p.initial,
        [b for b, _ in p.slots[0]], threads=1, should_stop=lambda: False,
    ).weights
    from safetensors.torch import load

    names = set(load(update))
    assert names == {"1.attn.qkv.lora_a", "1.attn.qkv.lora_b", "1.attn.out.lora_a",
                     "1.attn.out.lora_b"}
    full = compute.train(
        json.dumps(full_job.model.to_mapping()), compute.train_params_json(spec),
        full_job.initial, [b for b, _ in full_job.slots[0]], threads=1,
        should_stop=lambda: False,
    ).weights
    assert len(full) > 10 * len(update)
    assert assess.check_update(p, spec, p.initial, update) == ""
    # a full-weights upload is refused; so is one adapter too few
    assert assess.check_update(p, spec, p.initial, full) != ""
    short = weights.encode({k: v for k, v in load(update).items() if "out" not in k})
    assert assess.check_update(p, spec, p.initial, short) != ""
    agg = assess.aggregate(p, spec, p.initial, [("a", 10, update), ("b", 10, update)], None)
    assert not agg.rejected
    state = weights.decode(agg.model, p.model)
    base_state = weights.decode(base.read_bytes(), p.model.base)
    assert all(torch.equal(state[k], v) for k, v in base_state.items())  # base frozen
    merged = weights.decode(jobdata.merged(agg.model, 2, 4.0), p.model.base)
    a = jobdata.metrics_on_test(p, agg.model)["loss"]
    from training.local import task_metrics

    b = task_metrics(p.model.base, merged, p.test_x, p.test_y)["loss"]
    assert abs(a - b) < 1e-4


def test_lora_needs_a_target_the_model_has() -> None:
    spec = models.ModelSpec.from_mapping({"name": "mlp", "lora": {"rank": 2}})
    assert any(models.is_adapter(n) for n, _, _ in weights.layout(spec))
    assert lora.adapters_only({"0.weight": torch.zeros(1), "0.lora_a": torch.zeros(1)}) == {
        "0.lora_a": torch.zeros(1)
    }
    with pytest.raises(SpecError) as info:
        models.ModelSpec.from_mapping({"name": "mlp", "lora": {"rank": 2, "targets": ["x"]}})
    assert info.value.field.startswith("lora.targets")


@pytest.mark.parametrize("targets", [["linear"], ["attention"], ["feedforward"],
                                     ["attention", "feedforward", "linear"]])
def test_submit_time_adapter_count_matches_torch(targets: list[str]) -> None:
    raw = {"layers": LAYERS, "in_shape": [8], "tokens": True}
    lora_spec = {"rank": 3, "alpha": 6.0, "targets": targets}
    spec = models.ModelSpec.from_mapping({"name": "custom", "params": raw, "lora": lora_spec})
    adapters = sum(p.numel() for n, p in models.build(spec).named_parameters()
                   if models.is_adapter(n))
    assert adapters > 0
    assert budget.adapter_params("custom", raw, lora_spec) == adapters
