"""Update compression (training/compress.py) and model deltas (training/modeldelta.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import load, save

from training import compress, modeldelta, weights
from training.compress import CompressionError

LAYOUT = (("a.weight", (7, 40), "F32"), ("a.bias", (7,), "F32"), ("steps", (), "I64"))
LOSSY = ("fp16", "bf16", "int8", "topk")


def _state(seed: int, scale: float = 1.0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "a.weight": torch.randn(7, 40, generator=g) * scale,
        "a.bias": torch.randn(7, generator=g) * scale,
        "steps": torch.tensor(seed, dtype=torch.int64),
    }


def _delta(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> torch.Tensor:
    return torch.cat([(a[k].double() - b[k].double()).flatten() for k in ("a.weight", "a.bias")])


@pytest.mark.parametrize("mode", LOSSY)
def test_round_trip_rebuilds_the_update_within_the_form_s_error(mode: str) -> None:
    base, new = _state(1), _state(2)
    blob, residual = compress.encode(new, base, mode, fraction=0.1)
    got, _ = compress.decode(blob, base, LAYOUT, mode, fraction=0.1)
    assert list(got) == [n for n, _, _ in LAYOUT]
    assert torch.equal(got["steps"], new["steps"])
    err = float((_delta(got, base) - _delta(new, base)).norm() / _delta(new, base).norm())
    bound = {"fp16": 1e-3, "bf16": 1e-2, "int8": 2e-2, "topk": 1.0}[mode]
    assert err < bound
    # what was left out is exactly the residual kept for the next round
    left = torch.cat([residual[k].double().flatten() for k in ("a.weight", "a.bias")])
    assert torch.allclose(_delta(got, base) + left, _delta(new, base), atol=1e-5)


def test_compressed_updates_are_smaller() -> None:
    g = torch.Generator().manual_seed(0)
    base = {"w": torch.randn(200, 100, generator=g)}
    new = {"w": base["w"] + torch.randn(200, 100, generator=g)}
    plain = len(weights.encode(new))
    sizes = {m: len(compress.encode(new, base, m, fraction=0.05)[0]) for m in LOSSY}
    assert sizes["fp16"] < plain and sizes["int8"] < sizes["fp16"]
    assert sizes["topk"] < sizes["int8"]


def test_topk_sends_exactly_k_values_at_increasing_indices() -> None:
    base, new = _state(1), _state(2)
    blob, _ = compress.encode(new, base, "topk", fraction=0.1)
    parts = load(blob)
    assert parts["v/a.weight"].numel() == math.ceil(0.1 * 280) == 28
    assert parts["v/a.bias"].numel() == 1
    idx = parts["i/a.weight"].long()
    assert bool((idx[1:] > idx[:-1]).all())
    # they are the largest-magnitude values of the delta
    d = (new["a.weight"] - base["a.weight"]).flatten().abs()
    assert set(idx.tolist()) == set(torch.topk(d, 28).indices.tolist())


@settings(max_examples=25, deadline=None)
@given(
    mode=st.sampled_from(LOSSY),
    rounds=st.integers(1, 6),
    seed=st.integers(0, 10_000),
    fraction=st.floats(0.01, 0.5),
)
def test_error_feedback_transmits_the_sum_of_true_updates(
    mode: str, rounds: int, seed: int, fraction: float
) -> None:
    """Sum of transmitted deltas + the final residual == sum of true deltas."""
    base = _state(seed)
    residual = None
    sent = torch.zeros(287, dtype=torch.float64)
    true = torch.zeros(287, dtype=torch.float64)
    for r in range(rounds):
        new = {k: v + 0.1 * _state(seed + r + 1)[k] if v.is_floating_point() else v
               for k, v in base.items()}
        blob, residual = compress.encode(new, base, mode, fraction=fraction, residual=residual)
        got, _ = compress.decode(blob, base, LAYOUT, mode, fraction=fraction)
        sent += _delta(got, base)
        true += _delta(new, base)
        base = got  # the next round starts from what was received
    left = torch.cat([residual[k].double().flatten() for k in ("a.weight", "a.bias")])
    assert torch.allclose(sent + left, true, atol=1e-4)


def test_sketch_keeps_distances_and_ignores_the_residual() -> None:
    base, new, other = _state(1), _state(2), _state(3)
    seed = compress.sketch_seed("ab" * 32)
    noisy = {k: torch.randn(v.shape) if v.is_floating_point() else v for k, v in base.items()}
    a, _ = compress.encode(new, base, "topk", fraction=0.05, seed=seed)
    b, _ = compress.encode(new, base, "topk", fraction=0.05, seed=seed, residual=noisy)
    c, _ = compress.encode(other, base, "topk", fraction=0.05, seed=seed)
    sa, sb, sc = (compress.decode(x, base, LAYOUT, "topk", fraction=0.05)[1] for x in (a, b, c))
    assert compress.relative_distance(sa, sb) == 0.0  # same work, different residuals
    true = float((_delta(new, base) - _delta(other, base)).norm() / _delta(new, base).norm())
    assert compress.relative_distance(sa, sc) == pytest.approx(true, rel=0.3)
    assert compress.relative_distance(sa, sc) > 0.5


def _tampered(blob: bytes, name: str, value: torch.Tensor) -> bytes:
    parts = dict(load(blob))
    parts[name] = value
    return bytes(save(parts, {compress.METADATA_KEY: "x"}))


@pytest.mark.parametrize(
    ("mode", "change"),
    [
        ("int8", lambda b: _tampered(b, "s/a.weight", -torch.ones(2))),
        ("int8", lambda b: _tampered(b, "q/a.weight", torch.zeros(7, 41, dtype=torch.int8))),
        ("topk", lambda b: _tampered(b, "i/a.weight", torch.full((28,), 999, dtype=torch.int32))),
        ("topk", lambda b: _tampered(b, "i/a.weight", torch.zeros(28, dtype=torch.int32))),
        ("topk", lambda b: _tampered(b, "v/a.weight", torch.zeros(29))),
        ("fp16", lambda b: _tampered(b, "d/a.bias", torch.full((7,), float("nan")).half())),
        ("fp16", lambda b: _tampered(b, "d/a.bias", torch.zeros(7))),
        ("fp16", lambda b: _tampered(b, "extra", torch.zeros(1))),
        ("bf16", lambda b: b[:-3]),
        ("bf16", lambda b: b"not safetensors at all"),
    ],
)
def test_malformed_compressed_updates_are_refused(mode: str, change: object) -> None:
    base = _state(1)
    blob, _ = compress.encode(_state(2), base, mode, fraction=0.1)
    assert callable(change)
    with pytest.raises(CompressionError) as exc:
        compress.decode(change(blob), base, LAYOUT, mode, fraction=0.1)
    assert exc.value.reason == "bad_compression"


def test_an_update_of_another_form_is_refused() -> None:
    base = _state(1)
    blob, _ = compress.encode(_state(2), base, "int8")
    with pytest.raises(CompressionError):
        compress.decode(blob, base, LAYOUT, "fp16")
    with pytest.raises(CompressionError):
        compress.decode(weights.encode(_state(2)), base, LAYOUT, "int8")


def test_model_delta_is_lossless_and_smaller_for_a_trained_step() -> None:
    base = _state(1, 0.1)
    new = {k: v + 1e-3 * torch.randn(v.shape) if v.is_floating_point() else v
           for k, v in base.items()}
    a, b = weights.encode(base), weights.encode(new)
    delta = modeldelta.encode(a, b)
    assert delta is not None and len(delta) < len(b)
    assert modeldelta.apply(a, delta) == b
    assert modeldelta.encode(a, b + b"x") is None


@pytest.mark.parametrize("bad", [b"", b"DTD1", b"XXXX" + bytes(8), None])
def test_a_bad_model_delta_is_refused(bad: bytes | None) -> None:
    a = weights.encode(_state(1))
    delta = modeldelta.encode(a, weights.encode(_state(2)))
    assert delta is not None
    if bad is None:
        bad = delta[:-5]
    with pytest.raises(modeldelta.DeltaError):
        modeldelta.apply(a, bad)
    with pytest.raises(modeldelta.DeltaError):
        modeldelta.apply(a + b"1234", delta)  # made for a base of another size


def test_a_model_delta_cannot_inflate_past_its_base() -> None:
    import struct
    import zlib

    a = bytes(100)
    bomb = struct.pack("<4sQ", b"DTD1", 100) + zlib.compress(bytes(10_000_000))
    with pytest.raises(modeldelta.DeltaError):
        modeldelta.apply(a, bomb)
    assert np.frombuffer(a, dtype=np.uint8).sum() == 0


@settings(max_examples=200, deadline=None)
@given(mode=st.sampled_from(LOSSY), cut=st.integers(0, 4000), flips=st.lists(
    st.tuples(st.integers(0, 4000), st.integers(1, 255)), max_size=8))
def test_mutated_compressed_updates_never_raise_anything_else(
    mode: str, cut: int, flips: list[tuple[int, int]]
) -> None:
    """Any bytes decode to a checked update or raise CompressionError, nothing else."""
    base = _state(1)
    blob = bytearray(compress.encode(_state(2), base, mode, fraction=0.1)[0])
    for at, bits in flips:
        if at < len(blob):
            blob[at] ^= bits
    data = bytes(blob[: len(blob) - cut % len(blob)] if cut % 3 == 0 else blob)
    try:
        got, sketch = compress.decode(data, base, LAYOUT, mode, fraction=0.1)
    except CompressionError:
        return
    assert all(bool(torch.isfinite(v).all()) for v in got.values() if v.is_floating_point())
    assert bool(torch.isfinite(sketch).all())


def test_scales_that_overflow_the_rebuilt_update_are_refused() -> None:
    base = _state(1)
    blob, _ = compress.encode(_state(2), base, "int8")
    huge = _tampered(blob, "s/a.weight", torch.full((2,), 3e38))
    with pytest.raises(CompressionError):
        compress.decode(huge, base, LAYOUT, "int8")
