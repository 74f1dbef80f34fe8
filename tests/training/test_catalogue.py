"""The one catalogue: torch-free, and what every reader sees agrees with it."""

from __future__ import annotations

import subprocess
import sys

import pytest

from protocols.job.spec import SpecError, from_mapping
from training import catalogue as cat


def test_catalogue_and_spec_import_without_torch() -> None:
    code = "import protocols.job.spec, sys; assert 'torch' not in sys.modules, 'torch'; " \
           "assert 'numpy' not in sys.modules, 'numpy'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_trainer_side_reads_the_same_lists() -> None:
    from training import aggregate, datasets, models

    assert aggregate.RULES == cat.RULES
    bundled = {n for n, d in cat.DATASETS.items() if d.source == "bundled"}
    assert set(datasets.names()) == set(datasets._LOADERS) == bundled
    assert set(cat.OWNER_FORMATS) == set(cat.DATASETS) - bundled
    for name in set(cat.MODELS) - {"custom"}:  # every catalogue model is a preset of blocks
        assert models.ModelSpec.from_mapping({"name": name}).layers


def _spec_for(model: str, dataset: str) -> dict[str, object]:
    spec: dict[str, object] = {"model": model, "dataset": dataset}
    if model == "custom":
        spec["model_params"] = {"layers": [{"type": "linear", "out": 10}]}
    if dataset in cat.OWNER_FORMATS:
        spec["data"] = {"path": "somewhere", "target": "y"}
    return spec


@pytest.mark.parametrize("model", cat.JOB_MODELS)
@pytest.mark.parametrize("dataset", cat.JOB_DATASETS)
def test_every_job_pair_that_feeds_is_accepted_and_no_other(model: str, dataset: str) -> None:
    if cat.feeds(model, dataset):
        assert from_mapping(_spec_for(model, dataset)).model == model
    else:
        with pytest.raises(SpecError) as info:
            from_mapping(_spec_for(model, dataset))
        assert info.value.field == "model"


def test_every_job_model_has_a_dataset_and_a_mismatch_names_the_ones_that_feed() -> None:
    assert set(cat.JOB_MODELS) == set(cat.MODELS)
    with pytest.raises(SpecError) as info:
        from_mapping({"model": "char_lstm"})
    assert info.value.field == "model" and "text" in info.value.detail


def test_owner_formats_need_a_path_and_bundled_sets_refuse_one() -> None:
    with pytest.raises(SpecError) as info:
        from_mapping({"dataset": "npz"})
    assert info.value.field == "data.path"
    with pytest.raises(SpecError) as info:
        from_mapping({"dataset": "table", "data": {"path": "t.csv"}})
    assert info.value.field == "data.target"
    with pytest.raises(SpecError) as info:
        from_mapping({"dataset": "mnist", "data": {"path": "t.csv"}})
    assert info.value.field == "data"
    with pytest.raises(SpecError) as info:
        from_mapping({"dataset": "npz", "data": {"path": "a.npz", "missing": "guess"}})
    assert info.value.field == "data.missing"


def test_spec_and_trainer_share_hyper_parameter_bounds() -> None:
    from training.local import TrainParams

    for field, bad in [("epochs", 101), ("lr", 11.0), ("batch_size", 0), ("momentum", 1.0)]:
        with pytest.raises(SpecError) as spec_info:
            from_mapping({field: bad})
        with pytest.raises(SpecError) as train_info:
            TrainParams.from_mapping({field: bad})
        assert spec_info.value.field == train_info.value.field == field


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"bogus": 1}, "bogus"),
        ({"f": -1}, "f"),
        ({"f": True}, "f"),
        ({"trim": 0.5}, "trim"),
        ({"m": 0}, "m"),
        ({"server_lr": 0.0}, "server_lr"),
        ({"clip_norm": -1.0}, "clip_norm"),
        ({"noise_multiplier": 1.0}, "noise_multiplier"),  # without clip_norm
    ],
)
def test_rule_params_are_refused_at_submit_as_the_aggregator_refuses_them(
    params: dict[str, object], field: str
) -> None:
    """A bad rule setting is the submitter's error, not round 1's (the aggregator agrees)."""
    from training.aggregate import RuleConfig

    with pytest.raises(SpecError) as spec_info:
        from_mapping({"rule": "trimmed_mean", "rule_params": params})
    with pytest.raises(SpecError) as rule_info:
        RuleConfig.from_mapping({"name": "trimmed_mean", **params})
    assert spec_info.value.field == f"rule_params.{field}"
    assert rule_info.value.field == field


def test_good_rule_params_reach_the_aggregator() -> None:
    import dataclasses

    from training.aggregate import RuleConfig

    spec = from_mapping({"rule": "multi_krum", "rule_params": {"f": 2, "m": 3}})
    rule = RuleConfig(name=spec.rule, seed=spec.seed, **dataclasses.asdict(spec.rule_params))
    assert (rule.f, rule.m, rule.need(10)) == (2, 3, 7)


@pytest.mark.parametrize(
    ("model", "params", "field"),
    [
        ("mlp", {"bogus": 1}, "model_params.bogus"),
        ("mlp", {"hidden": "wide"}, "model_params.hidden"),
        ("mlp", {"hidden": [0]}, "model_params.hidden"),
        ("cnn", {"image_size": 30}, "model_params.image_size"),
    ],
)
def test_bad_model_params_are_refused_at_submit(
    model: str, params: dict[str, object], field: str
) -> None:
    """Not when the owner prepares the data, after the job was accepted."""
    with pytest.raises(SpecError) as info:
        from_mapping({"model": model, "dataset": "mnist", "model_params": params})
    assert info.value.field == field
    assert from_mapping({"model": "mlp", "dataset": "mnist", "model_params": {"hidden": [64]}})
