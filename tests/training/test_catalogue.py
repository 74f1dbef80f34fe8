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
    assert datasets.names() == sorted(cat.DATASETS)
    assert set(datasets._LOADERS) == set(cat.DATASETS)
    assert set(models._BUILDERS) == set(cat.MODELS)


@pytest.mark.parametrize("model", cat.JOB_MODELS)
@pytest.mark.parametrize("dataset", cat.JOB_DATASETS)
def test_every_job_pair_is_accepted(model: str, dataset: str) -> None:
    assert from_mapping({"model": model, "dataset": dataset}).model == model


def test_a_model_no_dataset_feeds_is_refused_clearly() -> None:
    assert "char_lstm" in cat.MODELS and "char_lstm" not in cat.JOB_MODELS
    with pytest.raises(SpecError) as info:
        from_mapping({"model": "char_lstm"})
    assert info.value.field == "model" and "tokens" in info.value.detail


def test_spec_and_trainer_share_hyper_parameter_bounds() -> None:
    from training.local import TrainParams

    for field, bad in [("epochs", 101), ("lr", 11.0), ("batch_size", 0), ("momentum", 1.0)]:
        with pytest.raises(SpecError) as spec_info:
            from_mapping({field: bad})
        with pytest.raises(SpecError) as train_info:
            TrainParams.from_mapping({field: bad})
        assert spec_info.value.field == train_info.value.field == field
