"""Update compression with error feedback, and the sketch comparisons rely on.

A compressed update is a safetensors file holding the trainer's *delta* from the
round's global model, in one of four forms (``JobSpec.compression``):

- ``fp16`` / ``bf16``: the delta in half precision (``d/<name>``);
- ``int8``: the delta quantised per block of :data:`BLOCK` values to int8
  (``q/<name>``) with one float32 scale per block (``s/<name>``);
- ``topk``: the ``k = ceil(fraction * n)`` largest-magnitude values of each tensor
  (``v/<name>``, float32) at their flat indices (``i/<name>``, int32, strictly
  increasing).

Non-float tensors travel whole (``r/<name>``). Every lossy form runs with error
feedback: the trainer adds its residual (what earlier rounds did not transmit) to
the delta before compressing and keeps what is again left out (:func:`encode`), so
over rounds the sum of what is transmitted tracks the sum of the true deltas.

Each compressed update also carries ``sketch``: a count sketch (:func:`sketch_dims`
values) of the trainer's *true*, uncompressed delta, seeded from the global model's
hash. The residual makes the transmitted delta depend on a trainer's history, so
replicas and the owner's re-runs compare sketches instead (docs/verification.md):
a count sketch keeps L2 distances (``E||S x||^2 = ||x||^2``) and cannot be made
without the delta itself. :func:`decode` checks everything against the expected
layout and raises :class:`CompressionError` (reason ``bad_compression``).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping

import torch
from safetensors.torch import load as _st_load
from safetensors.torch import save as _st_save

from training.errors import TrainingError
from training.tensorfile import TensorFileError, read_header
from training.weights import Layout, StateDict

MODES = ("none", "fp16", "bf16", "int8", "topk")
"""What ``JobSpec.compression`` may name ("none": plain weights, as before)."""
BLOCK = 256
"""Values sharing one int8 scale."""
SKETCH_DIMS = 512
"""Most values in the count sketch of the true delta a compressed update carries."""
METADATA_KEY = "distro.compression"
_HALF = {"fp16": (torch.float16, "F16"), "bf16": (torch.bfloat16, "BF16")}
_FLOAT_CODES = ("F32", "F64")


class CompressionError(TrainingError):
    """A compressed update does not match its job's form and model.

    Attributes:
        detail: What is wrong (tensor, shape, value).
    """

    reason = "bad_compression"

    def __init__(self, detail: str) -> None:
        super().__init__(f"compressed update refused: {detail}")
        self.detail = detail


def topk_count(numel: int, fraction: float) -> int:
    """Values a top-k update sends of a tensor of ``numel`` values (at least one)."""
    return min(numel, max(1, math.ceil(fraction * numel - 1e-9)))


def sketch_dims(numel: int) -> int:
    """The sketch's length for a model of ``numel`` float values: 1/16 of them, 64..512.

    The relative error of a sketched distance is about ``1/sqrt(dims)``; a small model
    gets a short sketch so the sketch never outweighs the update.
    """
    return min(SKETCH_DIMS, max(64, numel // 16))


def sketch_seed(global_sha256: str) -> int:
    """The count sketch's seed for updates of the global model with this hash."""
    return int.from_bytes(hashlib.sha256(b"sketch\x00" + global_sha256.encode()).digest()[:8],
                          "big") & (2**63 - 1)


def sketch(delta: Mapping[str, torch.Tensor], seed: int) -> torch.Tensor:
    """The count sketch (float64, :func:`sketch_dims`) of the float tensors of ``delta``.

    Each value goes, with a random sign, to a random bucket; both drawn from
    ``seed`` and the tensor's name, so every party sketching the same names agrees.
    """
    total = sum(t.numel() for t in delta.values() if t.is_floating_point())
    dims = sketch_dims(total)
    out = torch.zeros(dims, dtype=torch.float64)
    for name in sorted(delta):
        t = delta[name]
        if not t.is_floating_point() or t.numel() == 0:
            continue
        g = torch.Generator().manual_seed(seed ^ _name_seed(name))
        n = t.numel()
        buckets = torch.randint(dims, (n,), generator=g)
        signs = torch.randint(0, 2, (n,), generator=g, dtype=torch.float64) * 2 - 1
        out.index_add_(0, buckets, t.reshape(-1).double() * signs)
    return out


def _name_seed(name: str) -> int:
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:7], "big")


def _floats(layout: Layout) -> list[tuple[str, tuple[int, ...]]]:
    return [(n, s) for n, s, d in layout if d in _FLOAT_CODES]


def _int8(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    flat = x.reshape(-1).float()
    pad = (-flat.numel()) % BLOCK
    blocks = torch.nn.functional.pad(flat, (0, pad)).view(-1, BLOCK)
    scale = blocks.abs().amax(dim=1) / 127.0
    q = torch.round(blocks / scale.clamp_min(1e-30).unsqueeze(1)).clamp_(-127, 127)
    return q.reshape(-1)[: flat.numel()].to(torch.int8).view(x.shape), scale


def _from_int8(q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    flat = q.reshape(-1).float()
    per = scale.repeat_interleave(BLOCK)[: flat.numel()]
    return (flat * per).view(q.shape)


def _compress(name: str, x: torch.Tensor, mode: str, fraction: float) -> dict[str, torch.Tensor]:
    """The tensors one float delta ``x`` travels as."""
    if mode in _HALF:
        return {f"d/{name}": x.to(_HALF[mode][0])}
    if mode == "int8":
        q, scale = _int8(x)
        return {f"q/{name}": q, f"s/{name}": scale}
    flat = x.reshape(-1).float()
    k = topk_count(flat.numel(), fraction)
    idx = torch.sort(torch.topk(flat.abs(), k, sorted=False).indices).values
    return {f"i/{name}": idx.to(torch.int32), f"v/{name}": flat[idx]}


def _expand(
    parts: Mapping[str, torch.Tensor], name: str, shape: tuple[int, ...], mode: str
) -> torch.Tensor:
    """The float32 delta of tensor ``name`` from its transmitted ``parts``."""
    if mode in _HALF:
        return parts[f"d/{name}"].float()
    if mode == "int8":
        return _from_int8(parts[f"q/{name}"], parts[f"s/{name}"])
    out = torch.zeros(math.prod(shape), dtype=torch.float32)
    out[parts[f"i/{name}"].long()] = parts[f"v/{name}"]
    return out.view(shape)


def encode(
    update: Mapping[str, torch.Tensor],
    base: Mapping[str, torch.Tensor],
    mode: str,
    *,
    fraction: float = 0.01,
    residual: Mapping[str, torch.Tensor] | None = None,
    seed: int = 0,
) -> tuple[bytes, StateDict]:
    """Compress ``update`` (a plain update's tensors) as its delta from ``base``.

    Args:
        update: The trained tensors (names as the plain update would hold).
        base: The same names in the round's global model.
        mode: One of :data:`MODES` but ``none``.
        fraction: Share of each tensor's values a ``topk`` update sends.
        residual: Float32 residual per float tensor from earlier rounds (error
            feedback); None or missing names: zero.
        seed: The sketch's seed (:func:`sketch_seed` of the global model's hash).

    Returns:
        The compressed update's bytes and the new residual (what was left out).
    """
    if mode not in MODES or mode == "none":
        raise ValueError(f"no compression form {mode!r}")
    tensors: dict[str, torch.Tensor] = {}
    true_delta: dict[str, torch.Tensor] = {}
    new_residual: StateDict = {}
    for name, value in update.items():
        if not value.is_floating_point():
            tensors[f"r/{name}"] = value.contiguous()
            continue
        delta = value.double() - base[name].double()
        true_delta[name] = delta
        carried = residual.get(name) if residual is not None else None
        x = (delta + carried.double() if carried is not None else delta).float()
        parts = _compress(name, x, mode, fraction)
        new_residual[name] = x - _expand(parts, name, tuple(x.shape), mode)
        tensors.update(parts)
    tensors["sketch"] = sketch(true_delta, seed).float()
    blob = _st_save({k: v.contiguous() for k, v in tensors.items()}, {METADATA_KEY: mode})
    return bytes(blob), new_residual


def _expected(layout: Layout, mode: str, fraction: float) -> dict[str, tuple[tuple[int, ...], str]]:
    """Every tensor a compressed update of ``layout`` must hold: name -> (shape, dtype)."""
    total = sum(math.prod(s) for _, s in _floats(layout))
    out: dict[str, tuple[tuple[int, ...], str]] = {"sketch": ((sketch_dims(total),), "F32")}
    for name, shape, dtype in layout:
        n = math.prod(shape)
        if dtype not in _FLOAT_CODES:
            out[f"r/{name}"] = (shape, dtype)
        elif mode in _HALF:
            out[f"d/{name}"] = (shape, _HALF[mode][1])
        elif mode == "int8":
            out[f"q/{name}"] = (shape, "I8")
            out[f"s/{name}"] = ((math.ceil(n / BLOCK),), "F32")
        else:
            k = topk_count(n, fraction)
            out[f"i/{name}"], out[f"v/{name}"] = ((k,), "I32"), ((k,), "F32")
    return out


def _load(blob: bytes, expected: Mapping[str, tuple[tuple[int, ...], str]],
          max_bytes: int) -> dict[str, torch.Tensor]:
    """Parse ``blob`` after checking its header holds exactly ``expected``."""
    try:
        header = read_header(blob, max_bytes=max_bytes)
    except TensorFileError as exc:
        raise CompressionError(f"{exc.reason}: {exc.detail}") from None
    if set(header) != set(expected):
        missing, extra = sorted(set(expected) - set(header)), sorted(set(header) - set(expected))
        raise CompressionError(f"tensors: missing {missing[:5]}, unexpected {extra[:5]}")
    for name, (shape, dtype) in expected.items():
        if header[name].shape != shape or header[name].dtype != dtype:
            raise CompressionError(f"{name}: {header[name].dtype}{list(header[name].shape)}"
                                   f" != expected {dtype}{list(shape)}")
    try:
        return dict(_st_load(bytes(blob)))
    except Exception as exc:  # noqa: BLE001 - the library's error types are not public API
        raise CompressionError(f"safetensors refused the blob: {exc}") from None


def _check_values(parts: Mapping[str, torch.Tensor], layout: Layout, mode: str) -> None:
    """Finite numbers, non-negative scales, strictly increasing indices in range."""
    for name, tensor in parts.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise CompressionError(f"{name}: values that are not finite")
    for name, shape in _floats(layout):
        if mode == "int8" and bool((parts[f"s/{name}"] < 0).any()):
            raise CompressionError(f"s/{name}: negative scale")
        if mode == "topk":
            idx = parts[f"i/{name}"].long()
            if idx.numel() and (int(idx[0]) < 0 or int(idx[-1]) >= math.prod(shape)):
                raise CompressionError(f"i/{name}: index out of range")
            if idx.numel() > 1 and not bool((idx[1:] > idx[:-1]).all()):
                raise CompressionError(f"i/{name}: indices not strictly increasing")


def decode(
    blob: bytes,
    base: Mapping[str, torch.Tensor],
    layout: Layout,
    mode: str,
    *,
    fraction: float = 0.01,
    max_bytes: int = 256 * 1024 * 1024,
) -> tuple[StateDict, torch.Tensor]:
    """Rebuild a plain update from untrusted compressed bytes.

    Args:
        blob: The compressed update.
        base: The global model's tensors (at least those of ``layout``).
        layout: The plain update's tensors (name, shape, dtype) it must rebuild.
        mode: The job's form.
        fraction: Its top-k share.
        max_bytes: Size bound, checked before parsing.

    Returns:
        (the plain update's tensors in ``layout`` order, the float64 sketch of the
        trainer's true delta).

    Raises:
        CompressionError: another form, tensors missing or extra, a shape or dtype
            that is not the layout's, non-finite values, bad indices or scales.
    """
    if mode not in MODES or mode == "none":
        raise ValueError(f"no compression form {mode!r}")
    parts = _load(blob, _expected(layout, mode, fraction), max_bytes)
    _check_values(parts, layout, mode)
    out: StateDict = {}
    for name, shape, dtype in layout:
        if dtype not in _FLOAT_CODES:
            out[name] = parts[f"r/{name}"]
            continue
        delta = _expand(parts, name, shape, mode)
        out[name] = (base[name].double() + delta.double()).to(base[name].dtype)
        if not bool(torch.isfinite(out[name]).all()):
            raise CompressionError(f"{name}: the rebuilt values overflow")
    return out, parts["sketch"].double()


def stored_sketch(blob: bytes) -> torch.Tensor | None:
    """The sketch of a compressed update already decoded once; None for plain weights."""
    try:
        header = read_header(blob, max_bytes=len(blob))
    except TensorFileError:
        return None
    if "sketch" not in header:
        return None
    value: torch.Tensor = _st_load(bytes(blob))["sketch"]
    return value.double()


def relative_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """``||a - b|| / max(||a||, ||b||)``: 0 for equal vectors, inf for a nonzero vs zero."""
    scale = max(float(a.norm()), float(b.norm()))
    diff = float((a - b).norm())
    if scale == 0.0:
        return 0.0 if diff == 0.0 else math.inf
    value = diff / scale
    return value if math.isfinite(value) else math.inf
