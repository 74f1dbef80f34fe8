"""Daemons on simulated separate hosts (tests/netns/lab.py): each process in its own
network namespace with its own address, trainers behind two different NATs.

Skipped, saying why, only where network namespaces are unavailable (not root, not
Linux). The lab's WAN is private address space, which trainers refuse by default: the
trainer config allows ``10.50.0.0/24`` (``[trainer] allow_networks``), and nothing else.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from p2pnode.control import call
from tests.conftest import wait_for
from tests.netns.lab import Lab, unavailable_reason
from tests.netns.nodes import PORT, Nodes, run_job

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


def test_bootstrap_on_0000_advertises_an_address_other_hosts_dial(
    lab: Lab, nodes: Nodes
) -> None:
    boot_ns, boot_ip = lab.public_host("boot")
    pub_ns, _ = lab.public_host("pub")
    home_ns, home_ip, router_ip = lab.nat_host("home")
    with nodes.dumping():
        boot = nodes.start(boot_ns, "boot", "bootstrap")
        boot.wait_ready()
        addr = (boot.data_dir / "multiaddr").read_text().strip()
        assert addr.startswith(f"/ip4/{boot_ip}/tcp/{PORT}/p2p/"), addr
        assert all("0.0.0.0" not in a for a in boot.addrs), boot.addrs
        assert lab.can_connect(home_ns, boot_ip, PORT)
        public = nodes.start(pub_ns, "pub", "daemon", "--bootstrap", addr)
        home = nodes.start(home_ns, "home", "daemon", "--bootstrap", addr)
        public.wait_ready()
        home.wait_ready()
        assert home.addrs[0].startswith(f"/ip4/{home_ip}/"), home.addrs
        # The NAT'd daemon reached the public one through the bootstrap's advertised
        # address and is seen by it over the connection it opened (from router_ip).
        wait_for(lambda: public.peer_ids() == {home.peer_id}
                 and home.peer_ids() == {public.peer_id},
                 60, 0.2, "the public and the NAT'd daemon to see each other")
        assert not lab.can_connect(pub_ns, home_ip, PORT, 1.0)
        assert not lab.can_connect(pub_ns, router_ip, PORT, 1.0)


JOB = {
    "model": "mlp", "model_params": {"hidden": [32]}, "dataset": "digits", "trainers": 2,
    "rounds": 2, "epochs": 1, "lr": 0.1, "batch_size": 16, "partition": "iid",
    "chunk_samples": 200, "round_deadline_s": 60.0,
}


def test_job_with_public_owner_and_trainers_behind_two_nats(lab: Lab, nodes: Nodes) -> None:
    """The owner's embedded S3 server binds to and presigns for its public address."""
    boot_ns, _ = lab.public_host("boot")
    owner_ns, owner_ip = lab.public_host("owner")
    homes = [lab.nat_host(f"home{i}") for i in range(2)]
    with nodes.dumping():
        boot = nodes.start(boot_ns, "boot", "bootstrap")
        boot.wait_ready()
        addr = (boot.data_dir / "multiaddr").read_text().strip()
        owner = nodes.start(owner_ns, "owner", "daemon", "--bootstrap", addr)
        trainers = [nodes.start(ns, f"trainer{i}", "daemon", "--bootstrap", addr)
                    for i, (ns, _, _) in enumerate(homes)]
        for node in [owner, *trainers]:
            node.wait_ready()
        wait_for(lambda: owner.peer_ids() >= {t.peer_id for t in trainers}, 60, 0.2,
                 "the owner to see both trainers")
        status = run_job(owner, nodes, JOB, 180)
        assert status["state"] == "done", status
        assert all(r["accepted"] == 2 for r in status["history"]), status["history"]
        assert f"embedded S3 server at http://{owner_ip}:" in owner.tail(100_000)
        # Both trainers, each behind its own NAT, fetched their chunks from the owner's
        # S3 server and trained every round.
        job_id = status["job_id"]
        for t in trainers:
            assert call(t.data_dir, "trainer.status")["jobs"][job_id]["rounds_done"] == 2
