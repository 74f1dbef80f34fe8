"""Long fuzz run of every decoder that takes bytes from outside (not a test).

Hypothesis drives each decoder with many random inputs (default 20,000 each) and
checks the contract: the decoder returns a value or raises its own typed error,
never anything else, and never takes long. Prints one line per decoder and, last,
``fuzz_passed=N/M``. CI runs the same properties with fewer examples.

    .venv/bin/python -m bench.fuzz [--examples 20000]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from libp2p.crypto.ed25519 import create_new_key_pair

from p2pnode.rpc import Routes
from protocols.envelope import ReplayGuard, open_message
from protocols.errors import EnvelopeError, SealError
from protocols.job.spec import SpecError, loads
from protocols.seal import unseal
from storage.chunks import Manifest
from storage.errors import ManifestError
from tests.job.fuzz_support import (
    BODY_DECODERS,
    bodies,
    check_answer,
    decode_body,
    real_routes,
    signed,
)
from training import chunks as chunk_codec
from training import weights
from training.errors import TrainingError
from training.models import ModelSpec

KEY = create_new_key_pair().private_key
SPEC = ModelSpec.from_mapping({"name": "logreg", "params": {"in_features": 64}})
ROUTES: Routes = real_routes(Path(tempfile.mkdtemp(prefix="fuzz-routes-")))
"""The route table of a real daemon (node and jobs routes), not a stand-in."""


def envelope(data: bytes) -> None:
    with suppress(EnvelopeError):
        open_message(data, replay=ReplayGuard())


def sealed(data: bytes) -> None:
    with suppress(SealError):
        unseal(data, KEY, purpose="task", job_id="j", round=1)
        raise AssertionError("random bytes opened")


def spec_text(data: bytes) -> None:
    with suppress(SpecError):
        loads(data)


def manifest(data: bytes) -> None:
    with suppress(ManifestError):
        Manifest.decode(data)


def weights_blob(data: bytes) -> None:
    with suppress(TrainingError):
        weights.decode(data, SPEC)


def chunk_blob(data: bytes) -> None:
    with suppress(TrainingError):
        chunk_codec.decode_chunk(data)


def rpc_line(data: bytes) -> None:
    check_answer(ROUTES, data)


def rpc_request(data: bytes) -> None:
    check_answer(ROUTES, data)


def rpc_requests() -> st.SearchStrategy[bytes]:
    """Well-formed requests to every real method with fuzzed params."""
    values = st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
        max_leaves=12,
    )
    params = st.dictionaries(st.sampled_from(["job_id", "spec", "topic", "data"]) | st.text(),
                             values, max_size=3)
    return st.fixed_dictionaries(
        {"jsonrpc": st.just("2.0"), "id": st.integers(0, 9),
         "method": st.sampled_from(ROUTES.names()), "params": params},
    ).map(lambda r: json.dumps(r).encode())


def signed_body_case(
    kind: str,
) -> tuple[Callable[[bytes], None], st.SearchStrategy[bytes]]:
    """Fuzzed bodies of ``kind`` inside validly signed envelopes: the decoders are reached."""
    return (lambda body: decode_body(kind, signed(kind, body))), bodies(kind)


def safetensors_like() -> st.SearchStrategy[bytes]:
    """Bytes shaped like safetensors: a length prefix, a JSON-ish header, a body."""
    header = st.dictionaries(
        st.text(max_size=8),
        st.dictionaries(
            st.sampled_from(["dtype", "shape", "data_offsets"]),
            st.one_of(st.text(max_size=5), st.lists(st.integers(-5, 2**40), max_size=3)),
        ),
        max_size=4,
    ).map(lambda d: json.dumps(d).encode())
    return st.tuples(header, st.binary(max_size=256)).map(
        lambda hb: len(hb[0]).to_bytes(8, "little") + hb[0] + hb[1]
    )


CASES: dict[str, tuple[Callable[[bytes], None], st.SearchStrategy[bytes]]] = {
    "envelope": (envelope, st.binary(max_size=4096)),
    "sealed_payload": (sealed, st.binary(max_size=1024)),
    "job_spec": (spec_text, st.binary(max_size=1024) | st.text(max_size=512).map(str.encode)),
    "manifest": (manifest, st.binary(max_size=1024) | st.text(max_size=512).map(str.encode)),
    "weights_safetensors": (weights_blob, safetensors_like() | st.binary(max_size=512)),
    "chunk_safetensors": (chunk_blob, safetensors_like() | st.binary(max_size=512)),
    "json_rpc_line": (
        rpc_line,
        st.binary(max_size=512) | st.text(max_size=256).map(lambda t: t.encode() + b"\n"),
    ),
    "json_rpc_real_routes": (rpc_request, rpc_requests()),
    **{f"signed_{kind}": signed_body_case(kind) for kind in sorted(BODY_DECODERS)},
}


def run_case(
    fn: Callable[[bytes], None], strategy: st.SearchStrategy[bytes], examples: int
) -> float:
    """Run ``fn`` on ``examples`` inputs; return the slowest call's seconds."""
    slowest = [0.0]

    @settings(
        max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    @given(strategy)
    def prop(data: bytes) -> None:
        t = time.perf_counter()
        fn(data)
        slowest[0] = max(slowest[0], time.perf_counter() - t)

    prop()
    return slowest[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=20_000)
    args = parser.parse_args()
    passed = 0
    for name, (fn, strategy) in CASES.items():
        t0 = time.perf_counter()
        try:
            slowest = run_case(fn, strategy, args.examples)
            ok = slowest < 1.0
            detail = f"slowest input {slowest * 1000:.1f} ms"
        except Exception as exc:
            ok, detail = False, f"FAILED: {type(exc).__name__}: {str(exc)[:300]}"
        passed += ok
        print(f"{name:22s} {args.examples} examples in {time.perf_counter() - t0:6.1f}s  {detail}")
    print(f"fuzz_passed={passed}/{len(CASES)}")
    return 0 if passed == len(CASES) else 1


if __name__ == "__main__":
    sys.exit(main())
