"""The trainer's heavy work of the job protocol, as blocking functions for worker threads.

With :mod:`protocols.job.jobdata` (the owner's data) and :mod:`protocols.job.assess`
(the owner's checks and aggregation), these are the only modules of ``protocols/``
that reach into ``training`` (torch), and they import it inside the functions: the
daemon stays torch-free until it actually prepares, trains or aggregates a job.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import distro_json
from protocols.job.jobmemory import heap_warmed

if TYPE_CHECKING:
    from protocols.job.spec import JobSpec
    from training.local import TrainResult

MAX_PARAMS_JSON = 16 * 1024


def sha256(data: bytes) -> str:
    """Lowercase hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def json_object(text: str, what: str) -> dict[str, Any]:
    """Decode a peer's small JSON object, or raise ``training.errors.SpecError``."""
    from training.errors import SpecError  # torch-free, kept beside its use

    if len(text) > MAX_PARAMS_JSON:
        raise SpecError(what, f"larger than {MAX_PARAMS_JSON} bytes")
    try:
        value = distro_json.loads(text)
    except ValueError as exc:
        raise SpecError(what, f"not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise SpecError(what, "must be an object")
    return value


def warm_up(device: str = "cpu") -> str:
    """Import the training stack (torch) ahead of the first task; blocking.

    Returns:
        What the trainer should advertise as its GPU for ``device`` (``[trainer]
        device``): the CUDA device's model when it trains there, else "".

    Raises:
        training.errors.DeviceUnavailable: ``cuda`` asked for and torch sees none.
    """
    from training.local import device_name, resolve_device

    name = device_name(resolve_device(device))
    heap_warmed()  # a daemon's torch objects leave the collector's sight (jobmemory)
    return name


def check_job(model_json: str, params_json: str) -> None:
    """Validate an announced model spec and training parameters.

    Raises:
        training.errors.SpecError: naming what is wrong (unknown model, bad
            hyper-parameter...); its ``reason`` is ``bad_spec``.
    """
    from training.local import TrainParams  # torch only when working
    from training.modelspec import ModelSpec

    ModelSpec.from_mapping(json_object(model_json, "model"))
    TrainParams.from_mapping(json_object(params_json, "train params"))


def train(
    model_json: str,
    params_json: str,
    model: bytes,
    chunks: Sequence[bytes],
    *,
    threads: int,
    should_stop: Callable[[], bool],
    nonce: bytes = b"",
    device: str = "cpu",
    release_chunks: bool = False,
) -> TrainResult:
    """Run one local training task (trainer side); blocking.

    ``release_chunks``: ``chunks`` is a list the caller is done with, emptied entry by
    entry as it is decoded (``training.local.train``).

    ``nonce``: the task's nonce; it replaces the seed by
    ``verification.task_seed(seed, nonce)``, which sets the data order. ``device``:
    ``cpu``, ``cuda`` or ``auto`` (``training.local.resolve_device``); the update
    comes back as CPU safetensors either way.
    """
    from protocols.job.verification import task_seed
    from training import local
    from training.modelspec import ModelSpec

    spec = ModelSpec.from_mapping(json_object(model_json, "model"))
    params = json_object(params_json, "train params")
    if threads:
        params["threads"] = threads
    if nonce:
        params["seed"] = task_seed(int(params.get("seed", 0)), nonce)
    return local.train(
        spec,
        model,
        chunks,
        local.TrainParams.from_mapping(params),
        should_stop=should_stop,
        device=device,
        release_chunks=release_chunks,
    )


def train_params_json(spec: JobSpec) -> str:
    """The training hyper-parameters trainers receive, as JSON."""
    return json.dumps(
        {
            "epochs": spec.epochs,
            "batch_size": spec.batch_size,
            "lr": spec.lr,
            "optimizer": spec.optimizer,
            "momentum": spec.momentum,
            "prox_mu": spec.prox_mu,
            "seed": spec.seed,
        },
        sort_keys=True,
    )


def compress_update(
    model_json: str, global_model: bytes, update: bytes, mode: str, fraction: float,
    residual: bytes = b"",
) -> tuple[bytes, bytes]:
    """A trainer's plain ``update`` compressed as ``mode`` (error-fed by ``residual``).

    Returns:
        (the bytes to upload, the residual to keep for the job's next task); blocking.
    """
    from training import updatecodec
    from training.modelspec import ModelSpec

    spec = ModelSpec.from_mapping(json_object(model_json, "model"))
    return updatecodec.pack(spec, global_model, update, mode, fraction, residual)
