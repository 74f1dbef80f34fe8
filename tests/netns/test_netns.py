"""Daemons on simulated separate hosts (tests/netns/lab.py): each process in its own
network namespace with its own address, trainers behind two different NATs.

Skipped, saying why, only where network namespaces are unavailable (not root, not
Linux). The lab's WAN is private address space, which trainers refuse by default: the
trainer config allows ``10.50.0.0/24`` (``[trainer] allow_networks``), and nothing else.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from p2pnode.control import call
from tests.conftest import wait_for
from tests.netns.lab import Lab, unavailable_reason
from tests.netns.nodes import PORT, Nodes, nat_job_network, run_job
from tests.p2pnode.harness import NodeProc

_WHY = unavailable_reason()
pytestmark = pytest.mark.skipif(_WHY is not None, reason=f"network namespaces: {_WHY}")


@pytest.fixture
def lab() -> Iterator[Lab]:
    with Lab() as lab:
        yield lab


@pytest.fixture
def nodes(lab: Lab, tmp_path: Path) -> Iterator[Nodes]:
    started = Nodes(lab, tmp_path)
    try:
        yield started
    finally:
        started.close()  # before the lab fixture deletes the namespaces


def test_bootstrap_address_dialable_and_nat_traversal(lab: Lab, nodes: Nodes) -> None:
    """The bootstrap node on 0.0.0.0 advertises its real address; two daemons behind
    two different NATs learn they are unreachable (dial-back), reserve slots on the
    bootstrap relay, connect through it, then punch a direct connection (DCUtR; the NATs
    drop unsolicited connections, as home routers do)."""
    boot_ns, boot_ip = lab.public_host("boot")
    pub_ns, _ = lab.public_host("pub")
    homes = [lab.nat_host(f"home{i}") for i in range(2)]
    with nodes.dumping():
        boot = nodes.start(boot_ns, "boot", "bootstrap")
        boot.wait_ready()
        addr = (boot.data_dir / "multiaddr").read_text().strip()
        assert addr.startswith(f"/ip4/{boot_ip}/tcp/{PORT}/p2p/"), addr
        assert all("0.0.0.0" not in a for a in boot.addrs), boot.addrs
        assert lab.can_connect(homes[0][0], boot_ip, PORT)
        public = nodes.start(pub_ns, "pub", "daemon", "--bootstrap", addr)
        behind = [nodes.start(ns, f"home{i}", "daemon", "--bootstrap", addr)
                  for i, (ns, _, _) in enumerate(homes)]
        for node in [public, *behind]:
            node.wait_ready()
        for node, (_, home_ip, router_ip) in zip(behind, homes, strict=True):
            assert node.addrs[0].startswith(f"/ip4/{home_ip}/"), node.addrs
            assert not lab.can_connect(pub_ns, home_ip, PORT, 1.0)
            assert not lab.can_connect(pub_ns, router_ip, PORT, 1.0)

        def nat(node: NodeProc) -> dict[str, Any]:
            status: dict[str, Any] = node.rpc("node.status")
            out: dict[str, Any] = dict(status["nat"])
            out.update(connected=status["connected"], peers=status["peers"],
                       addrs=status["addrs"])
            return out

        wait_for(lambda: nat(public)["reachability"] == "public"
                 and all(nat(n)["reachability"] == "private" and nat(n)["relays"]
                         for n in behind), 60, 0.2, "reachability verdicts and reservations")
        assert any("/p2p-circuit/p2p/" in a for a in nat(behind[0])["addrs"])
        # Each daemon is connected to the other two and the bootstrap node: the two
        # behind NAT only through the relay, or directly once the hole is punched.
        wait_for(lambda: all(nat(n)["connected"] == 3 and nat(n)["peers"] == 2
                             for n in [public, *behind]), 60, 0.2, "a full mesh")
        assert sum(nat(n)["circuit_dials"] for n in behind) >= 1
        wait_for(lambda: all(nat(n)["relayed_peers"] == 0 and nat(n)["connected"] == 3
                             for n in behind), 60, 0.2,
                 "the relayed connection to be upgraded to a direct one (DCUtR)")


JOB = {
    "model": "mlp", "model_params": {"hidden": [32]}, "dataset": "digits", "trainers": 2,
    "rounds": 2, "epochs": 1, "lr": 0.1, "batch_size": 16, "partition": "iid",
    "chunk_samples": 200, "round_deadline_s": 60.0,
}


def test_job_with_public_owner_and_trainers_behind_two_nats(lab: Lab, nodes: Nodes) -> None:
    """The owner's embedded S3 server binds to and presigns for its public address."""
    with nodes.dumping():
        net = nat_job_network(lab, nodes)
        owner_ip, owner, trainers = net.owner_ip, net.owner, net.trainers
        status = run_job(owner, nodes, JOB, 180)
        assert status["state"] == "done", status
        assert all(r["accepted"] == 2 for r in status["history"]), status["history"]
        assert f"embedded S3 server at http://{owner_ip}:" in owner.tail(100_000)
        # Both trainers, each behind its own NAT, fetched their chunks from the owner's
        # S3 server and trained every round.
        job_id = status["job_id"]
        for t in trainers:
            trainer = call(t.data_dir, "trainer.status")
            assert trainer["jobs"][job_id]["rounds_done"] == 2
            # Round 2 moved no chunk bytes: every chunk came from the trainer's cache.
            cache = trainer["chunk_cache"]
            assert cache["misses"] > 0 and cache["hits"] == cache["misses"], cache
