"""Fuzzing that reaches the real code: the daemon's own control routes, signed bodies.

- The control socket's route table is a real daemon's (``node.*`` plus ``jobs.*``),
  driven with random bytes, random request objects and random params for every
  method: always a JSON-RPC answer with a known code, never a crash.
- Body decoders (presence, job update, offer, refusal) are fed validly signed
  envelopes around fuzzed bodies, so the fuzzer gets past the signature check.
"""

from __future__ import annotations

import json
import tempfile
from functools import cache
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from p2pnode.rpc import Routes
from tests.job.fuzz_support import BODY_DECODERS, bodies, check_answer, decode_body, real_routes
from tests.job.fuzz_support import signed as sign_body


@cache
def routes() -> Routes:
    return real_routes(Path(tempfile.mkdtemp(prefix="fuzz-rpc-")))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=10,
)


def requests() -> st.SearchStrategy[dict[str, Any]]:
    methods = st.sampled_from([*routes().names(), "nope"])
    params = st.dictionaries(
        st.sampled_from(["job_id", "spec", "x", "topic", "data"]) | st.text(max_size=6),
        json_values | st.text(max_size=70), max_size=3)
    return st.fixed_dictionaries(
        {"jsonrpc": st.just("2.0"), "method": methods},
        optional={"id": st.integers(0, 10) | json_values, "params": params | json_values},
    )


FAST = settings(max_examples=200, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def test_the_real_route_table_has_the_jobs_routes() -> None:
    assert {"node.id", "jobs.status", "jobs.submit"} <= set(routes().names())


@FAST
@given(st.binary(max_size=300))
def test_random_bytes_get_a_json_rpc_error_or_nothing(data: bytes) -> None:
    check_answer(routes(), data)


@FAST
@given(st.data())
def test_random_requests_to_every_real_method_get_valid_answers(data: st.DataObject) -> None:
    check_answer(routes(), json.dumps(data.draw(requests())).encode())


def test_deep_nesting_is_refused_not_fatal() -> None:
    for depth in (33, 5_000, 200_000):
        check_answer(routes(), b"[" * depth + b"]" * depth)
        inner = b'{"a":' * depth + b"1" + b"}" * depth
        check_answer(routes(), b'{"jsonrpc":"2.0","id":1,"method":"jobs.submit","params":{"spec":'
                     + inner + b"}}")


@FAST
@given(st.sampled_from(sorted(BODY_DECODERS)).flatmap(
    lambda kind: st.tuples(st.just(kind), bodies(kind))))
def test_signed_fuzzed_bodies_reach_the_decoders(case: tuple[str, bytes]) -> None:
    kind, body = case
    decode_body(kind, sign_body(kind, body))
