import json
import struct

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from training import models, weights
from training.errors import WeightsError

SPEC = models.ModelSpec.from_mapping({"name": "mlp", "params": {"in_features": 64, "hidden": [16]}})


def test_round_trip_and_seeded_initial() -> None:
    blob = weights.initial(SPEC, 7)
    assert blob == weights.initial(SPEC, 7) != weights.initial(SPEC, 8)
    state = weights.decode(blob, SPEC)
    assert weights.encode(state) == blob
    assert weights.sha256(blob) == weights.sha256(bytes(blob))


def _reason(blob: bytes, **kw: int) -> str:
    with pytest.raises(WeightsError) as info:
        weights.decode(blob, SPEC, **kw)
    return info.value.problem


def test_decode_checks_architecture() -> None:
    state = weights.decode(weights.initial(SPEC, 0), SPEC)
    renamed = {("x" + k if k == "0.bias" else k): v for k, v in state.items()}
    assert _reason(weights.encode(renamed)) == "names"
    assert _reason(weights.encode({**state, "extra": torch.zeros(1)})) == "names"
    assert _reason(weights.encode({**state, "0.bias": torch.zeros(17)})) == "shape"
    assert _reason(weights.encode({**state, "0.bias": state["0.bias"].double()})) == "dtype"
    other = models.ModelSpec.from_mapping({"name": "cnn"})
    assert _reason(weights.initial(other, 0)) == "names"


def test_size_bound_is_checked_before_parsing() -> None:
    blob = weights.initial(SPEC, 0)
    assert _reason(blob, max_bytes=len(blob) - 1) == "oversize"


def test_malformed_headers() -> None:
    blob = weights.initial(SPEC, 0)
    assert _reason(b"") == "malformed"
    assert _reason(blob[:-1]) == "malformed"
    assert _reason(blob + b"x") == "malformed"
    assert _reason(struct.pack("<Q", 1 << 60) + b"{}") == "malformed"
    hdr = json.dumps(
        {"0.weight": {"dtype": "F32", "shape": [10**9, 10**9], "data_offsets": [0, 4]}}
    )
    assert _reason(struct.pack("<Q", len(hdr)) + hdr.encode() + b"\x00" * 4) == "malformed"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_random_bytes_give_weights_error(blob: bytes) -> None:
    try:
        weights.decode(blob, SPEC)
    except WeightsError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 10_000), st.integers(0, 255))
def test_corrupted_valid_blob_never_crashes(pos: int, byte: int) -> None:
    blob = bytearray(weights.initial(SPEC, 0))
    blob[pos % len(blob)] = byte
    try:
        weights.decode(bytes(blob), SPEC)
    except WeightsError:
        pass


def test_flatten_unflatten_are_views() -> None:
    state = weights.decode(weights.initial(SPEC, 0), SPEC)
    flat = weights.flatten(state)
    views = weights.unflatten(flat, state)
    assert all(torch.equal(views[k], state[k]) for k in state)
    flat.zero_()
    assert all(float(v.abs().sum()) == 0 for v in views.values())
