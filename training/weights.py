"""Model weights as safetensors bytes: encode, checked decode, flat views.

Weights travel as safetensors (never pickle, never ``torch.load``). :func:`decode`
checks the size bound before parsing and the tensor names, shapes and dtypes against
the declared architecture after, so a peer cannot smuggle a different model in.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Mapping

import torch
from safetensors.torch import load as _st_load
from safetensors.torch import save as _st_save

from training import models
from training.errors import WeightsError
from training.tensorfile import TensorFileError, read_header

DEFAULT_MAX_BYTES = 256 * 1024 * 1024
"""Default bound for one weights blob (the CNN is ~6.7 MB)."""

_DTYPE_CODES = {torch.float32: "F32", torch.float64: "F64", torch.int64: "I64"}

StateDict = dict[str, torch.Tensor]


Entry = tuple[str, tuple[int, ...], str]
Layout = tuple[Entry, ...] | list[Entry]


@functools.lru_cache(maxsize=64)
def _layout(key: str) -> Layout:
    spec = models.ModelSpec.from_mapping(json.loads(key))
    with torch.device("meta"):
        module = models.build(spec)
    return tuple(
        (key, tuple(t.shape), _DTYPE_CODES.get(t.dtype, str(t.dtype)))
        for key, t in module.state_dict().items()
    )


def layout(spec: models.ModelSpec) -> Layout:
    """The architecture's ``(name, shape, safetensors dtype)`` list, in state-dict order."""
    return _layout(json.dumps(spec.to_mapping(), sort_keys=True))


def encode(state_dict: Mapping[str, torch.Tensor]) -> bytes:
    """Serialise a state dict to safetensors bytes (tensors copied to contiguous CPU)."""
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state_dict.items()}
    return bytes(_st_save(tensors))


def decode(data: bytes, spec: models.ModelSpec, *, max_bytes: int = DEFAULT_MAX_BYTES) -> StateDict:
    """Parse untrusted weight bytes for ``spec``.

    Args:
        data: safetensors bytes.
        spec: The declared architecture the weights must match exactly.
        max_bytes: Size bound, checked before any parsing.

    Returns:
        Name -> tensor, in the architecture's state-dict order.

    Raises:
        WeightsError: ``oversize``, ``malformed`` (not safetensors), ``names`` (missing or
            extra tensors), ``shape`` or ``dtype`` mismatch.
    """
    return decode_layout(data, layout(spec), max_bytes=max_bytes)


def decode_layout(
    data: bytes, expected: Layout, *, max_bytes: int = DEFAULT_MAX_BYTES
) -> StateDict:
    """Parse untrusted weight bytes that must hold exactly the tensors of ``expected``.

    Raises:
        WeightsError: as :func:`decode`.
    """
    try:
        header = read_header(data, max_bytes=max_bytes)
    except TensorFileError as exc:
        raise WeightsError(exc.reason, exc.detail) from None
    names = {n for n, _, _ in expected}
    if set(header) != names:
        missing, extra = sorted(names - set(header)), sorted(set(header) - names)
        raise WeightsError("names", f"missing {missing[:5]}, unexpected {extra[:5]}")
    for name, shape, dtype in expected:
        if header[name].shape != shape:
            raise WeightsError("shape", f"{name}: {header[name].shape} != expected {shape}")
        if header[name].dtype != dtype:
            raise WeightsError("dtype", f"{name}: {header[name].dtype} != expected {dtype}")
    try:
        loaded = _st_load(bytes(data))
    except Exception as exc:  # noqa: BLE001 - the library's error types are not public API
        raise WeightsError("malformed", f"safetensors refused the blob: {exc}") from None
    return {name: loaded[name] for name, _, _ in expected}


def initial(spec: models.ModelSpec, seed: int) -> bytes:
    """Encoded initial weights for ``spec``, reproducible from ``seed``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return encode(models.build(spec).state_dict())


def sha256(data: bytes) -> str:
    """Hex sha256 of ``data`` (what signed messages carry for every blob)."""
    return hashlib.sha256(data).hexdigest()


def flatten(state: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Concatenate a state dict into one new flat float32 tensor (one copy)."""
    return torch.cat([t.reshape(-1).to(torch.float32) for t in state.values()])


def unflatten(flat: torch.Tensor, like: Mapping[str, torch.Tensor]) -> StateDict:
    """Views of ``flat`` shaped like ``like`` (no copy).

    Raises:
        WeightsError: ``shape`` when ``flat`` does not hold exactly ``like``'s elements.
    """
    sizes = [t.numel() for t in like.values()]
    if flat.dim() != 1 or flat.numel() != sum(sizes):
        raise WeightsError("shape", f"flat tensor of {flat.numel()} != {sum(sizes)} elements")
    parts = torch.split(flat, sizes)
    return {k: p.view(t.shape) for (k, t), p in zip(like.items(), parts, strict=True)}
