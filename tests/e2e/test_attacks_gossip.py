"""Attacks on gossip and the control socket, over real daemon processes.

- A flood of validly signed, future-dated presence envelopes (let through the rate
  limit on purpose, so it fills every replay guard) does not stop honest presence.
- A peer flooding junk is rate-limited, then banned and disconnected; honest presence
  keeps flowing.
- A deeply nested JSON line on the control socket gets an error; the daemon answers.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from distro_procs import kill, spawn
from tests.conftest import wait_for
from tests.e2e.helpers import answers
from tests.p2pnode.harness import REPO, NodeProc, json_lines, open_network

FLOOD = 5_000
"""Envelopes per test flood (bench/attacks.py sends 100,000)."""

LET_FLOODS_IN = """
[gossip]
peer_messages_per_second = 1000000.0
peer_burst = 1000000
"""


def attacker_lines(out: Path) -> list[dict[str, Any]]:
    """The JSON lines the attacker printed so far (see tests.p2pnode.flood_attacker)."""
    return [dict(json.loads(line)) for line in out.read_text(errors="replace").splitlines()
            if line.startswith("{")]


@contextmanager
def attacker(root: Path, targets: list[NodeProc], count: int, kind: str,
             timeout_s: float = 240.0) -> Iterator[tuple[dict[str, Any], Path]]:
    """Run tests.p2pnode.flood_attacker against ``targets`` (bench/attacks.py too).

    Yields its flood report, once it came within ``timeout_s``, and the file its later
    lines (``{"disconnected": peer}``) go to.
    """
    out = root / f"attacker-{kind}.out"
    args = [sys.executable, "-m", "tests.p2pnode.flood_attacker", "--count", str(count),
            "--kind", kind]
    for t in targets:
        args += ["--connect", t.addrs[0]]
    proc = spawn(args, out, cwd=REPO)
    try:
        def report() -> dict[str, Any]:
            lines = [line for line in attacker_lines(out) if "sent" in line]
            assert lines or proc.poll() is None, out.read_text(errors="replace")[-2000:]
            return lines[0] if lines else {}

        yield wait_for(report, timeout_s, 0.2, "the attacker to finish its flood"), out
    finally:
        kill(proc)


def seqs(node: NodeProc) -> dict[str, int]:
    return {p["peer_id"]: int(p.get("seq", 0)) for p in node.rpc("node.peers")}


def assert_honest_presence_flows(a: NodeProc, b: NodeProc) -> None:
    """Each honest daemon accepts a presence message of the other newer than now."""
    before_a, before_b = seqs(a).get(b.peer_id, -1), seqs(b).get(a.peer_id, -1)
    wait_for(lambda: seqs(a).get(b.peer_id, -1) > before_a + 2
             and seqs(b).get(a.peer_id, -1) > before_b + 2, 30, 0.2,
             "honest daemons to accept each other's fresh presence")


def test_a_future_dated_flood_does_not_stop_honest_presence(tmp_path: Path) -> None:
    with open_network(tmp_path, 2, extra_toml=LET_FLOODS_IN) as net:
        a, b = net.daemons
        wait_for(lambda: a.peer_ids() == {b.peer_id} and b.peer_ids() == {a.peer_id}, 60)
        with attacker(tmp_path, [a, b], FLOOD, "future") as (report, _):
            assert report["sent_to"] == {a.peer_id: FLOOD, b.peer_id: FLOOD}, report
            assert_honest_presence_flows(a, b)
            assert report["peer_id"] in a.peer_ids()  # the flood did arrive and was valid
        assert answers(a.data_dir) and answers(b.data_dir)


def test_a_junk_flooder_is_rate_limited_then_disconnected(tmp_path: Path) -> None:
    with open_network(tmp_path, 2) as net:
        a, b = net.daemons
        wait_for(lambda: a.peer_ids() == {b.peer_id} and b.peer_ids() == {a.peer_id}, 60)
        with attacker(tmp_path, [a], FLOOD, "junk") as (report, out):
            status = wait_for(lambda: (s := a.rpc("node.status"))["gossip_bans"] >= 1 and s,
                              30, 0.2, "the flooder to be banned")
            assert status["gossip_rate_limited"] > 0
            wait_for(lambda: {"disconnected": a.peer_id} in attacker_lines(out), 30, 0.2,
                     "the banned flooder to be disconnected")
            assert report["peer_id"] not in a.peer_ids()
            assert_honest_presence_flows(a, b)
            # Only the flooder was banned; the honest daemons never were.
            assert a.rpc("node.status")["gossip_bans"] == 1
            assert b.rpc("node.status")["gossip_bans"] == 0


def test_a_deeply_nested_json_line_gets_an_error_and_the_daemon_keeps_answering(
        tmp_path: Path) -> None:
    with open_network(tmp_path, 1) as net:
        d = net.daemons[0]
        for line in (b"[" * 50_000 + b"]" * 50_000 + b"\n",
                     b'{"jsonrpc":"2.0","id":1,"method":"node.id","params":'
                     + b'{"a":' * 20_000 + b"1" + b"}" * 20_001 + b"\n",
                     b"\xff\xfe[[[{\n"):
            replies = json_lines(d.rpc_raw(line))
            assert len(replies) == 1 and replies[0]["error"]["code"] in (-32600, -32700)
        assert d.rpc("node.id")["peer_id"] == d.peer_id
        assert d.proc is not None and d.proc.poll() is None
