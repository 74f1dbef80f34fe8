"""Node processes in lab namespaces (tests/netns/lab.py), for the tests and bench/wan.py.

Daemons run the product's ``distro-train daemon`` code; the trainer config allows the
lab's WAN subnet (private address space, refused by default: storage/httpio.py).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from p2pnode import procs
from p2pnode.procs import wait_until
from tests.netns.lab import TRAINER_NETWORKS, Lab
from tests.p2pnode.harness import REPO, TEST_CONFIG, NodeProc

LAB_CONFIG = TEST_CONFIG.replace(
    'allow_networks = ["127.0.0.0/8", "::1/128"]',
    f"allow_networks = {json.dumps(TRAINER_NETWORKS)}\ntrain_threads = 1",
)
if TRAINER_NETWORKS[0] not in LAB_CONFIG:
    raise RuntimeError("tests/p2pnode/harness.py TEST_CONFIG changed its [trainer] table")
PORT = 4411


class Nodes:
    """Node processes started in lab namespaces; all stopped (by pid) on close."""

    def __init__(self, lab: Lab, root: Path) -> None:
        self.lab, self.root = lab, root
        root.mkdir(parents=True, exist_ok=True)
        self.config = root / "lab.toml"
        self.config.write_text(LAB_CONFIG)
        self.all: list[NodeProc] = []
        self.s3: list[Any] = []

    def start(self, ns: str, name: str, role: str, *flags: str,
              config: Path | None = None) -> NodeProc:
        program = ([str(REPO / "bootstrap.py")] if role == "bootstrap"
                   else ["-m", "p2pnode.cli", "daemon"])
        argv = [sys.executable, *program, "--data-dir", str(self.root / name),
                "--config", str(config or self.config),
                "--listen", f"/ip4/0.0.0.0/tcp/{PORT}", *flags]
        node = NodeProc(self.root / name, role, self.lab.argv(ns, argv))
        node.start()
        self.all.append(node)
        return node

    def start_s3(self, ns: str, ip: str) -> dict[str, Any]:
        """A standalone S3 server (storage/embedded.py) on ``ip``; its [storage] table."""
        data = self.root / "s3"
        log = self.root / "s3.log"
        argv = [sys.executable, "-m", "storage.embedded", "--data-dir", str(data),
                "--host", ip, "--port", "9000"]
        self.s3.append(procs.spawn(self.lab.argv(ns, argv), log, cwd=REPO))

        def line() -> dict[str, Any] | None:
            for text in log.read_text(errors="replace").splitlines():
                if text.startswith("{"):
                    return dict(json.loads(text))
            if self.s3[-1].poll() is not None:
                raise AssertionError(f"S3 server exited: {log.read_text()[-2000:]}")
            return None

        info = wait_until(line, 60, "the S3 server")
        creds = json.loads(Path(info["credentials_file"]).read_text())
        return {"kind": "embedded", "endpoint": info["endpoint"], "bucket": info["bucket"],
                "region": info["region"], "access_key": creds["access_key"],
                "secret_key": creds["secret_key"]}

    def close(self) -> None:
        procs.stop([n.proc for n in self.all if n.proc is not None] + self.s3, 10)

    def dump(self) -> None:
        """Write every node's log tail to stderr."""
        for node in self.all:
            sys.stderr.write(f"--- {node.role} {node.data_dir}\n{node.tail(4000)}\n")

    @contextmanager
    def dumping(self) -> Iterator[None]:
        """Dump the logs if the block fails."""
        try:
            yield
        except BaseException:
            self.dump()
            raise


def run_job(
    owner: NodeProc, nodes: Nodes, spec: dict[str, Any], timeout_s: float
) -> dict[str, Any]:
    """Submit ``spec`` to ``owner`` and return its final ``jobs.status``."""
    job_id = owner.rpc("jobs.submit", {"spec": spec})["job_id"]

    def finished() -> dict[str, Any] | None:
        for node in nodes.all:
            node.check_alive()
        s: dict[str, Any] = owner.rpc("jobs.status", {"job_id": job_id})
        return s if s["state"] not in ("preparing", "running") else None

    return wait_until(finished, timeout_s, "the job to end", interval_s=0.5)


@dataclass(frozen=True)
class NatNetwork:
    """What :func:`nat_job_network` started.

    Attributes:
        boot: The public bootstrap node (it relays).
        owner: The public owner daemon.
        owner_ip: The owner's public address.
        trainers: One trainer daemon behind each home NAT.
        wan_hosts: The namespaces whose WAN interfaces carry the job's traffic (the
            bootstrap, the owner, each home's router).
    """

    boot: NodeProc
    owner: NodeProc
    owner_ip: str
    trainers: list[NodeProc]
    wan_hosts: list[str]


def nat_job_network(lab: Lab, nodes: Nodes) -> NatNetwork:
    """A public bootstrap node and owner, and two trainers each behind its own NAT.

    Returns once every node answers and the owner sees both trainers.
    """
    boot_ns, _ = lab.public_host("boot")
    owner_ns, owner_ip = lab.public_host("owner")
    homes = [lab.nat_host(f"home{i}") for i in range(2)]
    boot = nodes.start(boot_ns, "boot", "bootstrap")
    boot.wait_ready()
    addr = (boot.data_dir / "multiaddr").read_text().strip()
    owner = nodes.start(owner_ns, "owner", "daemon", "--bootstrap", addr)
    trainers = [nodes.start(ns, f"trainer{i}", "daemon", "--bootstrap", addr)
                for i, (ns, _, _) in enumerate(homes)]
    for node in [owner, *trainers]:
        node.wait_ready()
    wait_until(lambda: owner.peer_ids() >= {t.peer_id for t in trainers}, 60,
               "the owner to see both trainers")
    hosts = [boot_ns, owner_ns] + [lab.routers[ns] for ns, _, _ in homes]
    return NatNetwork(boot, owner, owner_ip, trainers, hosts)
