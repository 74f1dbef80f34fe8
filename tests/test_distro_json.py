"""Deeply nested JSON from outside is refused before parsing, whatever the recursion limit.

py_ecc (imported with web3) raises Python's recursion limit to 100,000, and then
``json.loads`` of a deeply nested line overflows the C stack (SIGSEGV) instead of
raising RecursionError. These run with that limit, as a daemon that imported the
ledger does: a segfault fails the whole run.
"""

from __future__ import annotations

import struct
import sys
from collections.abc import Iterator

import pytest
import trio

import distro_json
from p2pnode.rpc import INVALID_REQUEST, Routes, dispatch
from protocols.job import compute
from training.errors import SpecError
from training.tensorfile import TensorFileError, read_header

DEEP = 300_000


@pytest.fixture(autouse=True)
def high_recursion_limit() -> Iterator[None]:
    before = sys.getrecursionlimit()
    sys.setrecursionlimit(100_000)
    try:
        yield
    finally:
        sys.setrecursionlimit(before)


def test_depth_counts_brackets_outside_strings() -> None:
    assert distro_json.depth(b'{"a": [1, {"b": "[[[[{{{"}]}') == 3
    assert distro_json.depth(b'"\\"[["') == 0
    assert distro_json.loads('{"a": [1, 2]}') == {"a": [1, 2]}
    with pytest.raises(distro_json.TooDeep):
        distro_json.loads(b"[" * DEEP + b"]" * DEEP)


def test_control_socket_line() -> None:
    answer = trio.run(dispatch, Routes(), b"[" * DEEP + b"]" * DEEP)
    assert answer is not None and str(INVALID_REQUEST).encode() in answer


def test_model_parameters_from_a_peer() -> None:
    deep = '{"a":' * 5000 + "1" + "}" * 5000
    with pytest.raises(SpecError):
        compute.json_object(deep, "model")


def test_safetensors_header_from_a_peer() -> None:
    header = b"[" * 50_000 + b"]" * 50_000
    blob = struct.pack("<Q", len(header)) + header
    with pytest.raises(TensorFileError):
        read_header(blob, max_bytes=len(blob))
