import time

import numpy as np
import pytest
import torch

from training import datasets, local, models, weights
from training.errors import ChunkError, SpecError, TrainingCancelled, WeightsError

DIGITS = models.ModelSpec.from_mapping({"name": "logreg", "params": {"in_features": 64}})


@pytest.fixture(scope="module")
def digits() -> datasets.Dataset:
    return datasets.load("digits")


def test_training_improves_and_is_deterministic(digits: datasets.Dataset) -> None:
    g = weights.initial(DIGITS, 0)
    chunks = datasets.make_chunks(digits.train_x, digits.train_y, 400)
    params = local.TrainParams(epochs=3, batch_size=32, lr=0.1, momentum=0.9, seed=5)
    a = local.train(DIGITS, g, chunks, params)
    b = local.train(DIGITS, g, chunks, params)
    assert a.weights == b.weights
    assert a.metrics.samples == len(digits.train_y)
    before = local.evaluate(DIGITS, g, digits.test_x, digits.test_y)
    after = local.evaluate(DIGITS, a.weights, digits.test_x, digits.test_y)
    assert after[1] > 0.9 > before[1] and after[0] < before[0]
    other = local.train(DIGITS, g, chunks, local.TrainParams(**{**params.__dict__, "seed": 6}))
    assert other.weights != a.weights


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_fedprox_keeps_update_closer_to_global(digits: datasets.Dataset, optimizer: str) -> None:
    g = weights.initial(DIGITS, 0)
    chunks = datasets.make_chunks(digits.train_x, digits.train_y, 2000)
    gs = weights.decode(g, DIGITS)

    def dist(mu: float) -> float:
        p = local.TrainParams(epochs=2, lr=0.05, optimizer=optimizer, prox_mu=mu)
        w = weights.decode(local.train(DIGITS, g, chunks, p).weights, DIGITS)
        return sum(float((w[k] - gs[k]).norm() ** 2) for k in gs) ** 0.5

    assert dist(1.0) < 0.8 * dist(0.0)


def test_cancellation_between_batches(digits: datasets.Dataset) -> None:
    chunks = datasets.make_chunks(digits.train_x, digits.train_y, 2000)
    calls = []

    def stop() -> bool:
        calls.append(1)
        return len(calls) > 3

    with pytest.raises(TrainingCancelled) as info:
        local.train(
            DIGITS, weights.initial(DIGITS, 0), chunks, local.TrainParams(), should_stop=stop
        )
    assert info.value.batches_done == 3


def test_chunks_must_fit_the_model(digits: datasets.Dataset) -> None:
    g = weights.initial(DIGITS, 0)
    mnist_like = datasets.encode_chunk(np.zeros((2, 784), np.float32), np.array([0, 1]))
    with pytest.raises(ChunkError) as info:
        local.train(DIGITS, g, [mnist_like], local.TrainParams())
    assert info.value.problem == "shape"
    bad_label = datasets.encode_chunk(np.zeros((1, 64), np.float32), np.array([10]))
    with pytest.raises(ChunkError):
        local.train(DIGITS, g, [bad_label], local.TrainParams())
    with pytest.raises(ChunkError):
        local.train(DIGITS, g, [], local.TrainParams())
    with pytest.raises(WeightsError):
        local.train(DIGITS, b"junk", [mnist_like], local.TrainParams())


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"epochs": 0}, "epochs"),
        ({"lr": float("nan")}, "lr"),
        ({"lr": -1.0}, "lr"),
        ({"optimizer": "rmsprop"}, "optimizer"),
        ({"momentum": 1.0}, "momentum"),
        ({"batch_size": True}, "batch_size"),
        ({"threads": -1}, "threads"),
        ({"evil": 1}, "evil"),
    ],
)
def test_bad_train_params(kw: dict, field: str) -> None:
    with pytest.raises(SpecError) as info:
        local.TrainParams.from_mapping(kw)
    assert info.value.field == field


def test_char_lstm_learns_tiny_text() -> None:
    d = datasets.load("tiny_text", limit=4000)
    spec = models.ModelSpec.from_mapping({"name": "char_lstm", "params": {"seq_len": 32}})
    g = weights.initial(spec, 0)
    res = local.train(
        spec,
        g,
        datasets.make_chunks(d.train_x, d.train_y, 2000),
        local.TrainParams(epochs=2, batch_size=64, lr=0.01, optimizer="adam", threads=1),
    )
    loss0, _ = local.evaluate(spec, g, d.test_x, d.test_y)
    loss1, acc1 = local.evaluate(spec, res.weights, d.test_x, d.test_y)
    assert loss1 < loss0 - 0.5 and acc1 > 0.3


def test_digits_federated_run_finishes_in_seconds(digits: datasets.Dataset) -> None:
    from tests.training.helpers import client_chunks, run_federated
    from training import aggregate

    t = time.perf_counter()
    parts = datasets.partition(digits.train_y, 4, "dirichlet", alpha=0.5, seed=0)
    accs = run_federated(
        DIGITS,
        digits,
        client_chunks(digits, parts),
        local.TrainParams(epochs=2, lr=0.1, momentum=0.9),
        aggregate.RuleConfig(),
        rounds=10,
    )
    assert accs[-1] >= 0.93, accs
    print(f"digits 4-client FedAvg: {accs[-1]:.3f} in {time.perf_counter() - t:.1f}s")


def test_threads_setting_applies(digits: datasets.Dataset) -> None:
    before = torch.get_num_threads()
    chunks = datasets.make_chunks(digits.train_x[:10], digits.train_y[:10], 10)
    local.train(DIGITS, weights.initial(DIGITS, 0), chunks, local.TrainParams(threads=1))
    assert torch.get_num_threads() == 1
    torch.set_num_threads(before)


def test_uint8_features_train_as_float32_divided_by_255(digits: datasets.Dataset) -> None:
    # 8-bit features (MNIST's pixels) travel and stay as uint8; the model reads k / 255.
    pixels = np.rint(digits.train_x * 255).astype(np.uint8)
    as_float = pixels.astype(np.float32) * np.float32(1 / 255)
    g = weights.initial(DIGITS, 0)
    params = local.TrainParams(epochs=2, batch_size=32, lr=0.1, seed=3)
    a = local.train(DIGITS, g, datasets.make_chunks(pixels, digits.train_y, 400), params)
    b = local.train(DIGITS, g, datasets.make_chunks(as_float, digits.train_y, 400), params)
    assert a.weights == b.weights and a.metrics.loss == b.metrics.loss
    test_pixels = np.rint(digits.test_x * 255).astype(np.uint8)
    test_float = test_pixels.astype(np.float32) * np.float32(1 / 255)
    assert local.evaluate(DIGITS, a.weights, test_pixels, digits.test_y) == local.evaluate(
        DIGITS, a.weights, test_float, digits.test_y
    )


def test_chunks_storing_samples_in_two_forms_are_refused(digits: datasets.Dataset) -> None:
    pixels = np.rint(digits.train_x[:10] * 255).astype(np.uint8)
    mixed = [
        datasets.encode_chunk(pixels, digits.train_y[:10]),
        datasets.encode_chunk(digits.train_x[:10], digits.train_y[:10]),
    ]
    with pytest.raises(ChunkError) as info:
        local.train(DIGITS, weights.initial(DIGITS, 0), mixed, local.TrainParams())
    assert info.value.problem == "dtype"


def test_released_chunks_are_emptied_as_decoded_and_train_the_same(
    digits: datasets.Dataset,
) -> None:
    g = weights.initial(DIGITS, 0)
    chunks = datasets.make_chunks(digits.train_x, digits.train_y, 400)
    params = local.TrainParams(epochs=1, lr=0.1, seed=2)
    kept = local.train(DIGITS, g, chunks, params)
    handed = list(chunks)
    released = local.train(DIGITS, g, handed, params, release_chunks=True)
    assert released.weights == kept.weights
    assert handed == [b""] * len(chunks) and all(chunks)
