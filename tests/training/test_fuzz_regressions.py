"""Inputs the long fuzz run (bench/fuzz.py) found; each must give a typed error."""

from __future__ import annotations

import json

import pytest

from training import chunks, weights
from training.errors import TrainingError
from training.models import ModelSpec

SPEC = ModelSpec.from_mapping({"name": "logreg", "params": {"in_features": 64}})


def blob(header: dict[str, object], body: bytes) -> bytes:
    raw = json.dumps(header).encode()
    return len(raw).to_bytes(8, "little") + raw + body


@pytest.mark.parametrize("dtype", [[1], {"x": 1}, None, 7])
def test_non_string_dtype_is_refused_not_crashed(dtype: object) -> None:
    data = blob({"a": {"dtype": dtype, "shape": [1], "data_offsets": [0, 4]}}, b"1234")
    with pytest.raises(TrainingError):
        weights.decode(data, SPEC)
    with pytest.raises(TrainingError):
        chunks.decode_chunk(data)
