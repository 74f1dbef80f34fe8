"""Multi-process integration: a bootstrap node and daemons over loopback."""

from __future__ import annotations

import signal
from pathlib import Path

from tests.conftest import wait_for
from tests.p2pnode.harness import NodeProc, open_network

DISCOVERY_DEADLINE = 60.0
DELIVERY_DEADLINE = 20.0


def sees_all(nodes: list[NodeProc]) -> bool:
    ids = {n.peer_id for n in nodes}
    return all(n.peer_ids() == ids - {n.peer_id} for n in nodes)


def received(node: NodeProc, sender: NodeProc) -> set[str]:
    msgs = node.rpc("debug.messages", {"topic": "t"})
    return {m["data"] for m in msgs if m["from"] == sender.peer_id}


def publish_until_all_receive(sender: NodeProc, others: list[NodeProc], prefix: str) -> str:
    """Publish ``prefix-N`` messages until one of them has reached every other node.

    Right after a subscription or a churn event the gossip mesh needs a heartbeat or two,
    so early messages may legitimately miss a peer; what must hold is that the network
    converges to delivering to everyone. Returns the first message everyone got.
    """
    sent: list[str] = []

    def one_reached_all() -> str | None:
        sent.append(f"{prefix}-{len(sent)}")
        sender.rpc("debug.publish", {"topic": "t", "data": sent[-1]})
        common = set(sent)
        for node in others:
            common &= received(node, sender)
        return min(common, key=sent.index) if common else None

    try:
        return wait_for(one_reached_all, DELIVERY_DEADLINE, 0.5, f"{prefix} reaches all")
    except AssertionError:
        got = {n.data_dir.name: sorted(received(n, sender)) for n in others}
        raise AssertionError(f"sent {sent}; received {got}") from None


def test_five_daemons_discover_gossip_and_survive_bootstrap_loss(tmp_path: Path) -> None:
    with open_network(tmp_path, 5) as net:
        daemons = net.daemons
        # Every daemon lists the other five (bootstrap publishes no presence).
        wait_for(lambda: sees_all(daemons), DISCOVERY_DEADLINE, 0.2, "all 5 daemons see each other")
        # Discovery goes through the DHT: each daemon ends up directly connected to the
        # four others and the bootstrap node, not only to the bootstrap node.
        wait_for(lambda: all(d.rpc("node.status")["connected"] >= 5 for d in daemons),
                 DISCOVERY_DEADLINE, 0.2, "direct connections between all daemons")
        assert not any(d.rpc("node.status")["torch_imported"] for d in daemons)

        for d in daemons:
            d.rpc("debug.subscribe", {"topic": "t"})
        sender, others = daemons[0], daemons[1:]
        publish_until_all_receive(sender, others, "hello")

        # A daemon joining the settled network finds all the others, and they find it.
        late = net.add_daemon("late")
        daemons = net.daemons
        wait_for(lambda: sees_all(daemons), DISCOVERY_DEADLINE, 0.2, "late joiner seen by all")
        wait_for(lambda: all(d.rpc("node.status")["connected"] >= 6 for d in daemons),
                 DISCOVERY_DEADLINE, 0.2, "late joiner directly connected to all")
        late.rpc("debug.subscribe", {"topic": "t"})

        # kill -9 of the bootstrap node: a message sent after it reaches everyone.
        net.bootstrap.kill()
        sender = daemons[2]
        publish_until_all_receive(sender, [d for d in daemons if d is not sender], "after")

        # kill -9 of a daemon: the others forget it after the silence timeout and go on.
        victim = daemons[1]
        victim.kill()
        alive = [d for d in daemons if d is not victim]
        wait_for(lambda: sees_all(alive), DISCOVERY_DEADLINE, 0.2, "dead daemon forgotten")
        for d in alive:
            assert d.proc is not None and d.proc.poll() is None

        # A frozen daemon (SIGSTOP) stays "connected" as far as py-libp2p knows: the
        # others must notice the silence, fail to ping it and disconnect it.
        frozen = alive[-1]
        frozen.signal(signal.SIGSTOP)
        try:
            rest = [d for d in alive if d is not frozen]
            wait_for(lambda: sees_all(rest), DISCOVERY_DEADLINE, 0.2, "frozen daemon forgotten")
            wait_for(lambda: all(d.rpc("node.status")["connected"] == len(rest) - 1 for d in rest),
                     DISCOVERY_DEADLINE, 0.2, "frozen daemon disconnected")
        finally:
            frozen.signal(signal.SIGCONT)
        # Thawed, it is seen again.
        wait_for(lambda: sees_all(alive), DISCOVERY_DEADLINE, 0.2, "thawed daemon back")
