import pytest
import torch

from training import datasets, local, models, weights
from training.errors import SpecError
from training.validate import ValidationConfig, validate, validate_round

SPEC = models.ModelSpec.from_mapping({"name": "logreg", "params": {"in_features": 64}})
CFG = ValidationConfig(norm_factor=3.0, quality_margin=0.5)


@pytest.fixture(scope="module")
def world() -> tuple:
    d = datasets.load("digits")
    g_bytes = weights.initial(SPEC, 0)
    g = weights.decode(g_bytes, SPEC)
    parts = datasets.partition(d.train_y, 6, "iid", seed=1)
    honest = []
    for i, p in enumerate(parts):
        res = local.train(
            SPEC,
            g_bytes,
            datasets.make_chunks(d.train_x[p], d.train_y[p], 1000),
            local.TrainParams(lr=0.05, seed=i, threads=1),
        )
        honest.append(weights.decode(res.weights, SPEC))
    return d, g, honest


def _verdict(g: dict, update: object, **kw: object) -> str:
    args = {"spec": SPEC, "median_norm": None, "heldout": None, "cfg": CFG} | kw
    v = validate(g, update, **args)  # type: ignore[arg-type]
    assert v.ok == (v.reason == "ok")
    return v.reason


def test_honest_update_is_accepted(world: tuple) -> None:
    d, g, honest = world
    assert _verdict(g, weights.encode(honest[0]), heldout=(d.test_x, d.test_y)) == "ok"


def test_non_finite_values_are_rejected(world: tuple) -> None:
    _, g, honest = world
    for bad in (float("nan"), float("inf"), -float("inf")):
        w = {k: v.clone() for k, v in honest[0].items()}
        w["0.weight"][3, 5] = bad
        assert _verdict(g, weights.encode(w)) == "non_finite"
        assert _verdict(g, w) == "non_finite"


def test_structure_is_checked(world: tuple) -> None:
    _, g, honest = world
    w = honest[0]
    assert _verdict(g, weights.encode({**w, "0.bias": torch.zeros(11)})) == "shape"
    assert _verdict(g, {**w, "0.bias": torch.zeros(11)}) == "shape"
    assert _verdict(g, weights.encode({**w, "0.bias": w["0.bias"].double()})) == "dtype"
    assert _verdict(g, weights.encode({"0.weight": w["0.weight"]})) == "names"
    assert _verdict(g, b"\xff" * 64) == "malformed"


def test_oversize_is_rejected_before_parsing(world: tuple) -> None:
    _, g, honest = world
    blob = weights.encode(honest[0])
    small = ValidationConfig(max_bytes=len(blob) - 1)
    assert _verdict(g, blob, cfg=small) == "oversize"


def test_quality_check_uses_heldout_loss(world: tuple) -> None:
    d, g, honest = world
    wrong = {k: v.clone() for k, v in honest[0].items()}
    wrong["0.bias"] += torch.arange(10.0) * 5  # strongly favours class 9
    assert _verdict(g, wrong, heldout=(d.test_x, d.test_y)) == "quality"


def test_round_rejects_norm_outliers_and_keeps_the_rest(world: tuple) -> None:
    d, g, honest = world
    scaled = {k: g[k] + 10 * (honest[0][k] - g[k]) for k in g}
    nan = {k: v.clone() for k, v in honest[1].items()}
    nan["0.bias"][0] = float("nan")
    received = [(f"h{i}", weights.encode(w), 100) for i, w in enumerate(honest)]
    received += [
        ("big", weights.encode(scaled), 100),
        ("nan", nan, 100),
        ("junk", b"not safetensors", 100),
    ]
    out = validate_round(g, received, spec=SPEC, heldout=(d.test_x, d.test_y), cfg=CFG)
    assert sorted(u.id for u in out.accepted) == [f"h{i}" for i in range(6)]
    reasons = {uid: v.reason for uid, v in out.rejected}
    assert reasons == {"big": "norm_outlier", "nan": "non_finite", "junk": "malformed"}


def test_bad_config() -> None:
    with pytest.raises(SpecError):
        ValidationConfig(norm_factor=0.5)
    with pytest.raises(SpecError):
        ValidationConfig(quality_margin=-1)
