"""Multi-process integration: a bootstrap node and daemons over loopback."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import wait_for
from tests.p2pnode.harness import NodeProc, open_network

DISCOVERY_DEADLINE = 60.0
DELIVERY_DEADLINE = 20.0


def sees_all(nodes: list[NodeProc]) -> bool:
    ids = {n.peer_id for n in nodes}
    return all(n.peer_ids() == ids - {n.peer_id} for n in nodes)


def delivered_to_all(sender: NodeProc, others: list[NodeProc], text: str) -> bool:
    def got(node: NodeProc) -> bool:
        msgs = node.rpc("debug.messages", {"topic": "t"})
        return any(m["data"] == text and m["from"] == sender.peer_id for m in msgs)

    return all(got(n) for n in others)


def test_five_daemons_discover_gossip_and_survive_bootstrap_loss(tmp_path: Path) -> None:
    with open_network(tmp_path, 5) as net:
        daemons = net.daemons
        # Every daemon lists the other five (bootstrap publishes no presence).
        wait_for(lambda: sees_all(daemons), DISCOVERY_DEADLINE, 0.2, "all 5 daemons see each other")
        # Discovery went through the DHT: each daemon holds direct connections to the
        # others, not only to the bootstrap node.
        for d in daemons:
            status = d.rpc("node.status")
            assert status["connected"] >= 5, status
            assert status["torch_imported"] is False

        for d in daemons:
            d.rpc("debug.subscribe", {"topic": "t"})
        sender, others = daemons[0], daemons[1:]
        # Mesh formation after subscribe takes a heartbeat or two: republish until seen.
        n = 0

        def first_message_arrives() -> bool:
            nonlocal n
            n += 1
            sender.rpc("debug.publish", {"topic": "t", "data": f"hello-{n}"})
            return delivered_to_all(sender, others, f"hello-{n}")

        wait_for(first_message_arrives, DELIVERY_DEADLINE, 0.5, "first gossip reaches all")

        # A daemon joining the settled network finds all the others, and they find it.
        late = net.add_daemon("late")
        daemons = net.daemons
        wait_for(lambda: sees_all(daemons), DISCOVERY_DEADLINE, 0.2, "late joiner seen by all")
        late.rpc("debug.subscribe", {"topic": "t"})

        # kill -9 of the bootstrap node: a new message still reaches everyone.
        net.bootstrap.kill()
        sender = daemons[2]
        n = 0

        def after_bootstrap_loss() -> bool:
            nonlocal n
            n += 1
            sender.rpc("debug.publish", {"topic": "t", "data": f"after-{n}"})
            return delivered_to_all(sender, [d for d in daemons if d is not sender], f"after-{n}")

        wait_for(after_bootstrap_loss, DELIVERY_DEADLINE, 0.5, "gossip after bootstrap loss")

        # kill -9 of a daemon: the others forget it after the silence timeout and go on.
        victim = daemons[1]
        victim.kill()
        alive = [d for d in daemons if d is not victim]
        wait_for(lambda: sees_all(alive), DISCOVERY_DEADLINE, 0.2, "dead daemon forgotten")
        for d in alive:
            assert d.proc is not None and d.proc.poll() is None
