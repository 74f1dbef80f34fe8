"""The control socket's JSON-RPC handler under fuzzed input: always a valid answer."""

from __future__ import annotations

import json
from typing import Any

import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pnode.rpc import Routes, dispatch

ROUTES = Routes()


async def echo(params: dict[str, Any]) -> dict[str, Any]:
    return params


ROUTES.add("echo", echo, required={"x": int}, optional={"y": str})

CODES = {-32700, -32600, -32601, -32602, -32603}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=10,
)
requests = st.fixed_dictionaries(
    {},
    optional={
        "jsonrpc": st.sampled_from(["2.0", "1.0"]) | json_values,
        "id": json_values,
        "method": st.sampled_from(["echo", "nope"]) | json_values,
        "params": json_values | st.fixed_dictionaries({"x": json_values}),
    },
)


def check(answer: bytes | None) -> None:
    if answer is None:
        return
    reply = json.loads(answer)
    assert reply["jsonrpc"] == "2.0"
    if "error" in reply:
        assert reply["error"]["code"] in CODES
    else:
        assert reply["result"]["x"] is not None


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_get_a_json_rpc_error_or_nothing(data: bytes) -> None:
    check(trio.run(dispatch, ROUTES, data))


@settings(max_examples=300, deadline=None)
@given(requests)
def test_random_request_objects_get_valid_answers(request: dict[str, Any]) -> None:
    check(trio.run(dispatch, ROUTES, json.dumps(request).encode()))
