"""Training throughput on the CPU and, where torch sees one, on a CUDA GPU.

For each model (the catalogue's 2NN MLP and McMahan's CNN on MNIST-sized inputs,
random data) it times ``training.local.train`` (the trainer's own code path, with
``device=...``) over a fixed number of samples and prints samples per second per
device. The last line is ``cpu_samples_per_s=X cuda_samples_per_s=Y speedup=Z`` for
the CNN (Y and Z are ``n/a`` without a GPU). Run it on a machine with a GPU:

    .venv/bin/python bench/gpu.py [--samples 8192] [--epochs 2] [--batch-size 64]
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch

from training import chunks, local, models, weights

MODELS = {
    "mlp": {"in_features": 784, "hidden": [200, 200]},
    "cnn": {"image_size": 28},
}


def throughput(name: str, device: str, samples: int, epochs: int, batch: int) -> float:
    """Samples per second of ``epochs`` passes of ``name`` over ``samples`` on ``device``."""
    spec = models.ModelSpec.from_mapping({"name": name, "params": MODELS[name]})
    rng = np.random.default_rng(0)
    x = rng.random((samples, 784), dtype=np.float32)
    y = rng.integers(0, 10, samples).astype(np.int64)
    blobs = chunks.make_chunks(x, y, 4096)
    start_weights = weights.initial(spec, 0)
    params = local.TrainParams(epochs=epochs, batch_size=batch, lr=0.01)
    local.train(spec, start_weights, blobs[:1], local.TrainParams(batch_size=batch), device=device)
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    local.train(spec, start_weights, blobs, params, device=device)
    if device == "cuda":
        torch.cuda.synchronize()
    return samples * epochs / (time.perf_counter() - start)


def main() -> int:
    """Print throughput per model and device; the CNN summary last."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=8192)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=64)
    args = ap.parse_args()
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, devices {devices}")
    if "cuda" in devices:
        print(f"gpu: {torch.cuda.get_device_name(0)}")
    rate: dict[tuple[str, str], float] = {}
    for name in MODELS:
        for device in devices:
            rate[name, device] = throughput(
                name, device, args.samples, args.epochs, args.batch_size
            )
            print(f"model={name} device={device} samples_per_s={rate[name, device]:.0f}")
    cpu = rate["cnn", "cpu"]
    cuda = rate.get(("cnn", "cuda"))
    print(
        f"cpu_samples_per_s={cpu:.0f} "
        f"cuda_samples_per_s={f'{cuda:.0f}' if cuda else 'n/a'} "
        f"speedup={f'{cuda / cpu:.1f}' if cuda else 'n/a'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
