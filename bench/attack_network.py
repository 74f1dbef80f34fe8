"""bench/attacks.py's attacks on the network layer: gossip floods, control-socket junk.

Each runs against bare daemons (tests/p2pnode/harness.py); the flooding peer is
tests/p2pnode/flood_attacker.py, started by the same helper as the tests use.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from attack_lines import ANSWER_TIMEOUT_S, Line, rss

from p2pnode.procs import wait_until
from tests.e2e.helpers import answers
from tests.e2e.test_attacks_gossip import LET_FLOODS_IN, attacker, seqs
from tests.p2pnode.harness import NodeProc, json_lines, open_network

PRESENCE_AFTER_S = 30.0
"""How long after a flood honest presence has to flow again."""


def presence_flows(a: NodeProc, b: NodeProc, timeout_s: float = PRESENCE_AFTER_S) -> bool:
    """Whether each daemon accepts 3 fresh presence messages of the other in ``timeout_s``."""
    before_a, before_b = seqs(a).get(b.peer_id, -1), seqs(b).get(a.peer_id, -1)
    try:
        wait_until(lambda: seqs(a).get(b.peer_id, -1) > before_a + 2
                   and seqs(b).get(a.peer_id, -1) > before_b + 2, timeout_s, "presence")
        return True
    except TimeoutError:
        return False


def gossip_flood(work: Path, kind: str, count: int, let_in: bool) -> Line:
    """Flood two daemons with ``count`` messages of ``kind`` (``future`` or ``junk``)."""
    with open_network(work / kind, 2, extra_toml=LET_FLOODS_IN if let_in else "") as net:
        a, b = net.daemons
        wait_until(lambda: a.peer_ids() == {b.peer_id} and b.peer_ids() == {a.peer_id}, 60,
                   "two daemons to see each other")
        assert a.proc is not None
        s0, rss0, seq0 = a.rpc("node.status"), rss(a.proc.pid), seqs(a).get(b.peer_id, -1)
        t0 = time.monotonic()
        with attacker(work, [a, b], count, kind, timeout_s=60 + count / 50) as (report, _):
            seconds = time.monotonic() - t0
            during = seqs(a).get(b.peer_id, -1) - seq0
            flows = presence_flows(a, b)
            s1 = a.rpc("node.status")
            attacker_listed = report["peer_id"] in a.peer_ids()
        alive = answers(a.data_dir, ANSWER_TIMEOUT_S) and answers(b.data_dir, ANSWER_TIMEOUT_S)
        limited = s1["gossip_rate_limited"] - s0["gossip_rate_limited"]
        bans = s1["gossip_bans"] - s0["gossip_bans"]
        dropped = s1["dropped_messages"] - s0["dropped_messages"]
        measured = (f"rate_limited={limited} bans={bans} queue_dropped={dropped}; honest "
                    f"presence seq +{during} in {seconds:.0f}s of flood, flowing after: "
                    f"{flows}; attacker still a live peer: {attacker_listed}; "
                    f"daemons answer: {alive}")
        if let_in:  # rate limit lifted: every envelope reaches the replay guard
            refused = flows and alive
            sent = (f"{report['sent']} presence envelopes dated +4 s (valid, fresh nonces) in "
                    f"{report['seconds']}s, rate limit lifted")
        else:
            refused = flows and alive and limited > 0 and bans >= 1
            sent = f"{report['sent']} random 200-byte messages in {report['seconds']}s"
        return Line(f"gossip/{kind}-flood", refused, sent, measured,
                    rss=(rss0, rss(a.proc.pid)))


NESTED = [
    b"[" * 50_000 + b"]" * 50_000 + b"\n",
    b'{"jsonrpc":"2.0","id":1,"method":"node.id","params":'
    + b'{"a":' * 20_000 + b"1" + b"}" * 20_001 + b"\n",
    b"\xff\xfe[[[{\n",
]


def control_attacks(work: Path, payloads: int) -> list[Line]:
    """Deeply nested JSON and ``payloads`` lines of random bytes on the control socket."""
    lines = []
    with open_network(work / "control", 1) as net:
        d = net.daemons[0]
        assert d.proc is not None
        for name, batch in (("control/nested-json", NESTED),
                            ("control/random-bytes",
                             [os.urandom(4096) + b"\n" for _ in range(payloads)])):
            rss0 = rss(d.proc.pid)
            errors = closed = other = 0
            for payload in batch:
                try:
                    replies = json_lines(d.rpc_raw(payload))
                except (OSError, ValueError):
                    other += 1
                    continue
                if not replies:
                    closed += 1
                elif all(r.get("error", {}).get("code") in (-32600, -32700) for r in replies):
                    errors += 1
                else:
                    other += 1
            same = d.rpc("node.id")["peer_id"] == d.peer_id and d.proc.poll() is None
            lines.append(Line(
                name, same and errors + closed == len(batch),
                f"{len(batch)} lines ({sum(map(len, batch)):,} bytes)",
                f"JSON-RPC error={errors} closed={closed} other={other}; "
                f"node.id still answers: {same}",
                rss=(rss0, rss(d.proc.pid))))
    return lines
