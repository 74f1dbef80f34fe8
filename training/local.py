"""Local training: what a trainer runs on its chunks, and evaluation.

:func:`train` is a plain blocking function. The daemon runs it off the trio loop
(``trio.to_thread.run_sync`` or a worker process) and passes ``should_stop``; it is
checked between batches and a true answer raises
:class:`~training.errors.TrainingCancelled`. Results are FULL weights, not deltas
(a LoRA model's result is its adapter tensors only).

Determinism: with the same weights, chunks and :class:`TrainParams` (seed included) the
result is bit-identical on the same machine and thread count. ``threads`` sets
``torch.set_num_threads``, which is process-wide.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypedDict, Unpack

import numpy as np
import torch
from numpy.typing import NDArray

import distro_schema
from training import catalogue, models, optim, weights
from training.chunks import DEFAULT_MAX_CHUNK_BYTES, UINT8_SCALE, decode_into
from training.errors import DeviceUnavailable, SpecError, TrainingCancelled

_EVAL_BATCH = 4096


@dataclass(frozen=True)
class TrainParams(catalogue.HyperParams):
    """Job hyper-parameters for one local training run.

    Bounds are the catalogue's (``training.catalogue``), the same the job spec checks.

    Attributes:
        epochs: Passes over the trainer's samples (>= 1).
        batch_size: Minibatch size (>= 1).
        lr: Learning rate (> 0).
        optimizer: ``"sgd"`` or ``"adam"``.
        momentum: SGD momentum in [0, 1).
        weight_decay: L2 weight decay (>= 0).
        prox_mu: FedProx proximal weight; adds ``mu/2 * ||w - w_global||^2`` (0 = FedAvg).
        seed: Seeds the minibatch order.
        threads: torch intra-op threads; 0 leaves torch's setting alone.
    """

    weight_decay: catalogue.WeightDecay = 0.0
    seed: catalogue.Seed = 0
    threads: catalogue.Threads = 0

    def __post_init__(self) -> None:
        distro_schema.check(self, error=SpecError)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> TrainParams:
        """Build from an untrusted mapping; unknown keys and bad values raise SpecError."""
        return distro_schema.load(cls, data, error=SpecError)


@dataclass(frozen=True)
class Metrics:
    """What a trainer reports with its update.

    Attributes:
        samples: Training samples used (per epoch).
        loss: Mean training loss over the last epoch.
        accuracy: Training accuracy over the last epoch, in [0, 1] (0 for regression,
            where the loss is the mean squared error).
        seconds: Wall-clock seconds of the whole call.
    """

    samples: int
    loss: float
    accuracy: float
    seconds: float


@dataclass(frozen=True)
class TrainResult:
    """Outcome of :func:`train`.

    Attributes:
        weights: Full trained weights, safetensors bytes; for a LoRA model only the
            adapter tensors (``training.lora``).
        metrics: Training metrics.
    """

    weights: bytes
    metrics: Metrics


def _to_tensors(
    spec: models.ModelSpec, x: NDArray[Any], y: NDArray[Any]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Tensors sharing ``x``'s memory where they can; uint8 features stay uint8.

    A float model reads uint8 features through :func:`_inputs`, one batch at a time,
    so the samples are never held as float32 in full.
    """
    keep = x.dtype == np.uint8 and spec.input_dtype == "float32"
    ax = np.ascontiguousarray(x, dtype=x.dtype if keep else np.dtype(spec.input_dtype))
    tx = torch.from_numpy(ax if ax.flags.writeable else ax.copy())
    return tx, torch.from_numpy(np.array(y, dtype=np.dtype(spec.label_dtype)))


def _inputs(batch: torch.Tensor, dev: torch.device) -> torch.Tensor:
    """A batch on ``dev`` as the model reads it: uint8 features scaled to [0, 1]."""
    batch = batch.to(dev, non_blocking=True)
    if batch.dtype == torch.uint8:
        return batch.to(torch.float32).mul_(UINT8_SCALE)
    return batch


def _loss_fn(spec: models.ModelSpec) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Cross-entropy for classes (and next tokens); squared error of output 0 for regression."""
    if spec.task == "regression":
        return lambda out, y: torch.nn.functional.mse_loss(out[:, 0], y)
    return torch.nn.functional.cross_entropy


DEVICES = ("auto", "cpu", "cuda")
"""What ``[trainer] device`` may say."""


def resolve_device(want: str) -> str:
    """``cpu`` or ``cuda``: ``auto`` is CUDA when torch sees a CUDA device, else the CPU.

    Raises:
        DeviceUnavailable: ``cuda`` asked for and torch sees no CUDA device, or an
            unknown name.
    """
    if want not in DEVICES:
        raise DeviceUnavailable(want, f"choose from {', '.join(DEVICES)}")
    cuda = torch.cuda.is_available()
    if want == "cuda" and not cuda:
        raise DeviceUnavailable("cuda", "torch sees no CUDA device (driver or build)")
    return "cuda" if want == "cuda" or (want == "auto" and cuda) else "cpu"


def device_name(device: str) -> str:
    """What a trainer advertises for ``device``: the GPU's model, or "" for the CPU."""
    return torch.cuda.get_device_name(0)[:64] if device == "cuda" else ""


_RESTORE_LOCK = threading.Lock()
_RESTORE = [0, 0]  # callers inside restored_threads(), the thread count before the first


@contextmanager
def restored_threads() -> Iterator[None]:
    """Put torch's process-wide thread count back when the last concurrent caller leaves.

    :func:`train` sets the count and leaves it (a trainer keeps its setting); code that
    trains on the side (the owner's re-runs) wraps its calls in this.
    """
    with _RESTORE_LOCK:
        if _RESTORE[0] == 0:
            _RESTORE[1] = torch.get_num_threads()
        _RESTORE[0] += 1
    try:
        yield
    finally:
        with _RESTORE_LOCK:
            _RESTORE[0] -= 1
            if _RESTORE[0] == 0:
                torch.set_num_threads(_RESTORE[1])


def _module(spec: models.ModelSpec, state: Mapping[str, torch.Tensor]) -> torch.nn.Module:
    # Built on the meta device and given the tensors: no random init, no global RNG use.
    with torch.device("meta"):
        model = models.build(spec)
    model.load_state_dict(dict(state), assign=True)
    return model


def _trainable(spec: models.ModelSpec, model: torch.nn.Module) -> list[torch.nn.Parameter]:
    """The parameters a task trains: all of them, or only the adapters of a LoRA job."""
    if spec.lora is not None:  # the base is frozen: only the adapters train
        for name, p in model.named_parameters():
            p.requires_grad_(models.is_adapter(name))
    return [p for p in model.parameters() if p.requires_grad]


def _optimizer(trainable: list[torch.nn.Parameter], params: TrainParams) -> optim.SGD | optim.Adam:
    # training.optim, not torch.optim: the same updates without importing torch._dynamo.
    if params.optimizer == "adam":
        return optim.Adam(trainable, lr=params.lr, weight_decay=params.weight_decay)
    return optim.SGD(
        trainable, lr=params.lr, momentum=params.momentum, weight_decay=params.weight_decay
    )


def _fit(
    spec: models.ModelSpec,
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    params: TrainParams,
    dev: torch.device,
    should_stop: Callable[[], bool],
) -> tuple[float, int]:
    """Train ``model`` in place for ``params.epochs`` passes over ``(x, y)``.

    Returns:
        The last epoch's summed loss and correct count (0 for regression).

    Raises:
        TrainingCancelled: ``should_stop()`` returned true between batches.
    """
    trainable = _trainable(spec, model)
    anchor = [p.detach().clone() for p in trainable] if params.prox_mu else []
    opt = _optimizer(trainable, params)
    gen = torch.Generator().manual_seed(params.seed)
    loss_fn = _loss_fn(spec)
    regression = spec.task == "regression"
    batches = 0
    model.train()
    for _ in range(params.epochs):
        order = torch.randperm(len(y), generator=gen)
        loss_sum, correct = 0.0, 0
        for i in range(0, len(y), params.batch_size):
            if should_stop():
                raise TrainingCancelled(batches)
            idx = order[i : i + params.batch_size]
            bx, by = _inputs(x[idx], dev), y[idx].to(dev, non_blocking=True)
            out = model(bx)
            loss = loss_fn(out, by)
            loss_sum += float(loss.detach()) * len(idx)
            if not regression:
                correct += int((out.argmax(1) == by).sum())
            if params.prox_mu:
                prox = sum(
                    ((p - a) ** 2).sum() for p, a in zip(trainable, anchor, strict=True)
                )
                loss = loss + params.prox_mu / 2 * prox
            opt.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            opt.step()
            batches += 1
    return loss_sum, correct


def train(
    spec: models.ModelSpec,
    global_weights: bytes,
    chunks: Sequence[bytes],
    params: TrainParams,
    *,
    should_stop: Callable[[], bool] = lambda: False,
    max_chunk_bytes: int = DEFAULT_MAX_CHUNK_BYTES,
    max_weight_bytes: int = weights.DEFAULT_MAX_BYTES,
    device: str = "cpu",
    release_chunks: bool = False,
) -> TrainResult:
    """Train ``spec`` from ``global_weights`` on ``chunks``; blocking.

    ``release_chunks``: ``chunks`` is a list the caller no longer needs; each entry is
    emptied once decoded (``training.chunks.decode_into``), so no chunk is held both
    encoded and decoded.

    ``device`` (``cpu``, ``cuda`` or ``auto``, see :func:`resolve_device`) holds the
    model and each batch; the minibatch order is drawn on the CPU, so it is the
    same on every device, and the weights come back as CPU safetensors.

    Raises:
        WeightsError: ``global_weights`` refused (see :func:`training.weights.decode`).
        ChunkError: A chunk refused, including samples of the wrong shape/dtype for the
            model or labels outside its classes; or no samples at all (``shape``).
        TrainingCancelled: ``should_stop()`` returned true between batches.
        DeviceUnavailable: ``device`` cannot be used here.
    """
    start = time.perf_counter()
    dev = torch.device(resolve_device(device))
    if params.threads:
        torch.set_num_threads(params.threads)
    state = weights.decode(global_weights, spec, max_bytes=max_weight_bytes)
    x, y = _to_tensors(
        spec,
        *decode_into(
            chunks,
            max_bytes=max_chunk_bytes,
            sample_shape=spec.input_shape,
            x_dtype=spec.input_dtype,
            classes=spec.classes,
            y_dtype=spec.label_dtype,
            release=release_chunks,
        ),
    )
    model = _module(spec, state).to(dev)
    loss_sum, correct = _fit(spec, model, x, y, params, dev, should_stop)
    metrics = Metrics(len(y), loss_sum / len(y), correct / len(y), time.perf_counter() - start)
    state_out = model.state_dict()
    if spec.lora is not None:  # upload only what trained
        state_out = {k: v for k, v in state_out.items() if models.is_adapter(k)}
    return TrainResult(weights.encode(state_out), metrics)


class EvalOptions(TypedDict, total=False):
    """The keywords :func:`evaluate` passes on to :func:`task_metrics`."""

    max_weight_bytes: int
    device: str


@torch.no_grad()
def evaluate(
    spec: models.ModelSpec,
    model_weights: bytes | Mapping[str, torch.Tensor],
    x: NDArray[Any],
    y: NDArray[Any],
    **options: Unpack[EvalOptions],
) -> tuple[float, float]:
    """The task's loss and score of the weights on ``(x, y)``.

    Classification (and next-token prediction): mean cross-entropy and accuracy.
    Regression: mean squared error and R² (1 - MSE / variance of ``y``; 0 when ``y``
    is constant). ``model_weights`` may be encoded bytes (checked as
    :func:`training.weights.decode` does) or an already checked state dict. A
    non-finite loss is returned as ``inf``.

    ``options`` are :func:`task_metrics`'s keywords.

    Raises:
        WeightsError: Bytes refused.
    """
    m = task_metrics(spec, model_weights, x, y, **options)
    return m["loss"], m["r2" if spec.task == "regression" else "accuracy"]


@torch.no_grad()
def task_metrics(
    spec: models.ModelSpec,
    model_weights: bytes | Mapping[str, torch.Tensor],
    x: NDArray[Any],
    y: NDArray[Any],
    *,
    max_weight_bytes: int = weights.DEFAULT_MAX_BYTES,
    device: str = "cpu",
) -> dict[str, float]:
    """Every metric of the task on ``(x, y)``, as :func:`evaluate` but all of them.

    ``device`` runs the model there (as :func:`train`); the figures are computed on
    the CPU.

    Returns:
        Classification: ``loss`` (cross-entropy), ``accuracy``, ``perplexity``
        (``exp(loss)``, what next-token prediction reports). Regression: ``loss`` and
        ``mse`` (the same), ``mae``, ``r2``, in the units ``y`` is given in.

    Raises:
        WeightsError: Bytes refused.
    """
    if isinstance(model_weights, bytes | bytearray):
        model_weights = weights.decode(bytes(model_weights), spec, max_bytes=max_weight_bytes)
    dev = torch.device(resolve_device(device))
    model = _module(spec, model_weights).to(dev)
    model.eval()
    ty = torch.from_numpy(np.array(y, dtype=np.dtype(spec.label_dtype)))
    # Batch by batch from the caller's array: no copy of the whole set, whatever its dtype.
    outs = [
        model(_inputs(_to_tensors(spec, x[i : i + _EVAL_BATCH], y[:0])[0], dev)).cpu()
        for i in range(0, len(ty), _EVAL_BATCH)
    ]
    n = max(len(ty), 1)
    if spec.task == "regression":
        pred = torch.cat([o[:, 0] for o in outs]) if outs else torch.zeros(0)
        err = pred.double() - ty.double()
        mse = float((err**2).sum()) / n
        var = float(((ty.double() - ty.double().mean()) ** 2).sum()) / n if len(ty) else 0.0
        loss = mse if math.isfinite(mse) else math.inf
        r2 = 1 - mse / var if var > 0 and math.isfinite(mse) else 0.0
        return {"loss": loss, "mse": loss, "mae": float(err.abs().sum()) / n, "r2": r2}
    loss_sum, correct = 0.0, 0
    for i, out in enumerate(outs):
        target = ty[i * _EVAL_BATCH : (i + 1) * _EVAL_BATCH]
        loss_sum += float(torch.nn.functional.cross_entropy(out, target, reduction="sum"))
        correct += int((out.argmax(1) == target).sum())
    loss = loss_sum / n
    loss = loss if math.isfinite(loss) else math.inf
    perplexity = math.exp(loss) if loss < 700 else math.inf
    return {"loss": loss, "accuracy": correct / n, "perplexity": perplexity}
