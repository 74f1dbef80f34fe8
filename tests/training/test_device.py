"""``[trainer] device``: auto, cpu or cuda; CPU path tested here (no GPU in CI)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import trio

import distro_schema
from protocols.job import compute
from protocols.job.trainer import Trainer
from protocols.job.trainerconfig import TrainerConfig
from tests.job.memnet import MemNet
from training import datasets, local, models, weights
from training.errors import DeviceUnavailable, SpecError

CUDA = torch.cuda.is_available()


def test_resolve_device() -> None:
    assert local.resolve_device("cpu") == "cpu"
    assert local.resolve_device("auto") == ("cuda" if CUDA else "cpu")
    with pytest.raises(DeviceUnavailable):
        local.resolve_device("tpu")
    if not CUDA:
        with pytest.raises(DeviceUnavailable) as info:
            local.resolve_device("cuda")
        assert info.value.reason == "no_device"


def test_config_refuses_unknown_devices() -> None:
    assert distro_schema.load(TrainerConfig, {"device": "cpu"}, error=SpecError).device == "cpu"
    with pytest.raises(SpecError) as info:
        distro_schema.load(TrainerConfig, {"device": "gpu"}, error=SpecError)
    assert info.value.field == "device"


@pytest.mark.parametrize("device", ["cpu", "auto"] + (["cuda"] if CUDA else []))
def test_training_on_a_device_returns_cpu_safetensors(device: str) -> None:
    spec = models.ModelSpec.from_mapping({"name": "mlp", "params": {"in_features": 64,
                                                                    "hidden": [32]}})
    d = datasets.load("digits")
    chunk = datasets.encode_chunk(d.train_x, d.train_y)
    params = local.TrainParams(epochs=5, lr=0.1, batch_size=32)
    start = weights.initial(spec, 0)
    result = local.train(spec, start, [chunk], params, device=device)
    state = weights.decode(result.weights, spec)  # checks names, shapes and dtypes
    assert all(t.device.type == "cpu" for t in state.values())
    loss, acc = local.evaluate(spec, result.weights, d.test_x, d.test_y, device=device)
    assert acc > 0.8 and np.isfinite(loss)
    if device != "cuda":  # same device, same seed: bit-identical to the CPU run
        cpu = local.train(spec, start, [chunk], params, device="cpu")
        assert cpu.weights == result.weights
    via_compute = compute.train(
        json.dumps(spec.to_mapping()), json.dumps({"epochs": 5, "lr": 0.1, "batch_size": 32}),
        start, [chunk], threads=0, should_stop=lambda: False, device=device,
    )
    assert via_compute.weights == result.weights or device == "cuda"


async def test_trainer_advertises_a_gpu_only_when_it_trains_there() -> None:
    seen: list[str] = []
    async with trio.open_nursery() as nursery:
        net = MemNet(nursery)
        for device in ("cpu", "auto", "cuda"):
            trainer = Trainer(net.add(), TrainerConfig(device=device), on_device=seen.append)
            await trainer.warm.run()
        nursery.cancel_scope.cancel()
    gpu = torch.cuda.get_device_name(0) if CUDA else ""
    assert seen == ["", gpu, gpu]
