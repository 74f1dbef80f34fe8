"""Fuzz helpers shared by the hypothesis tests and bench/fuzz.py.

- :func:`signed` wraps fuzzed body bytes in a *validly signed* envelope, so a fuzzer
  gets past the signature check and reaches the body decoders.
- :func:`real_routes` builds the control-socket route table of a real daemon (node
  routes plus the ``jobs.*`` routes), without starting its network.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import trio
from hypothesis import strategies as st
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.peer.id import ID

from p2pnode.rpc import Routes, dispatch
from protocols.envelope import DOMAIN, ReplayGuard, open_message
from protocols.errors import ProtocolError
from protocols.job import codec
from protocols.pb import distro_pb2 as pb
from protocols.presence.codec import decode_presence

KEY = create_new_key_pair()
PEER = ID.from_pubkey(KEY.public_key)
BODY_DECODERS = {
    "presence": lambda data: decode_presence(data, PEER, ReplayGuard()),
    "job.update": lambda data: codec.parse_update(open_message(data)),
    "job.offer": lambda data: codec.parse_offer(open_message(data)),
    "job.ack": lambda data: codec.parse_refusal(open_message(data)),
    "job.announce": lambda data: open_message(data),
    "job.round": lambda data: open_message(data),
}


def signed(kind: str, body: bytes, job_id: str = "j", round: int = 1) -> bytes:
    """Return ``body`` (any bytes) as a message of ``kind`` validly signed by KEY."""
    env = pb.Envelope(kind=kind, sender=PEER.to_bytes(), public_key=KEY.public_key.serialize(),
                      job_id=job_id, round=round, timestamp_ms=int(time.time() * 1000),
                      nonce=os.urandom(16), body=body)
    env_bytes = env.SerializeToString()
    sig = KEY.private_key.sign(DOMAIN + env_bytes)
    return pb.Signed(envelope=env_bytes, signature=sig).SerializeToString()


def _numbers() -> st.SearchStrategy[float]:
    return st.floats(allow_nan=True, allow_infinity=True) | st.integers(-(2**63), 2**63 - 1)


def bodies(kind: str) -> st.SearchStrategy[bytes]:
    """Raw bytes, and structurally valid protobuf bodies with extreme field values."""
    body_type = {"presence": pb.Presence, "job.update": pb.UpdateAnnounce, "job.offer": pb.Offer,
                 "job.ack": pb.Ack, "job.announce": pb.JobAnnounce, "job.round": pb.RoundResult}
    cls = body_type[kind]
    fields = cls.DESCRIPTOR.fields

    def build(values: list[Any]) -> bytes:
        msg = cls()
        for f, v in zip(fields, values, strict=False):
            try:
                if f.label == f.LABEL_REPEATED:
                    getattr(msg, f.name).extend([str(v)] if f.type == f.TYPE_STRING else [])
                elif f.type == f.TYPE_STRING:
                    setattr(msg, f.name, str(v)[:300])
                elif f.type == f.TYPE_BOOL:
                    setattr(msg, f.name, bool(v))
                elif f.type in (f.TYPE_FLOAT, f.TYPE_DOUBLE):
                    setattr(msg, f.name, float(v))
                elif f.type == f.TYPE_BYTES:
                    setattr(msg, f.name, str(v).encode())
                else:
                    setattr(msg, f.name, int(v) if isinstance(v, int) else 0)
            except (TypeError, ValueError, OverflowError):
                continue
        return bytes(msg.SerializeToString())

    structured = st.lists(_numbers() | st.text(max_size=80), min_size=len(fields),
                          max_size=len(fields)).map(build)
    return st.binary(max_size=512) | structured


def decode_body(kind: str, data: bytes) -> None:
    """Run the body decoder of ``kind``: a value or a ProtocolError, nothing else."""
    try:
        BODY_DECODERS[kind](data)
    except ProtocolError:
        pass


def real_routes(data_dir: Path) -> Routes:
    """The route table of a real daemon with the jobs routes installed (not running)."""
    from p2pnode.config import Config  # heavy: only when fuzzing routes
    from p2pnode.jobs import install
    from p2pnode.node import Node

    node = Node(Config.for_tests(data_dir))
    install(node)
    return node.routes


# The standard codes, and the application range docs/control.md reserves (-32000..-32099:
# jobs.* -32001, a daemon without the train extra -32002, market.* -32010).
CODES = {-32700, -32600, -32601, -32602, -32603, *range(-32099, -31999)}


def check_answer(routes: Routes, line: bytes) -> None:
    """Dispatch ``line``; the answer must be a JSON-RPC response with a known code."""
    answer = _dispatch(routes, line)
    if answer is None:
        return
    reply = json.loads(answer)
    assert reply["jsonrpc"] == "2.0"
    if "error" in reply:
        assert reply["error"]["code"] in CODES, reply


def _dispatch(routes: Routes, line: bytes) -> bytes | None:
    async def go() -> bytes | None:
        with trio.fail_after(10):
            return await dispatch(routes, line)

    return trio.run(go)
