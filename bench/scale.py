"""A job on a 50-process network: bootstrap, owner and 48 trainer-capable daemons (not a test).

    .venv/bin/python bench/scale.py [--daemons 49] [--trainers 4] [--rounds 3]

Every process runs on this machine's shared cores, on loopback, with the daemons'
default config (presence, gossip and discovery as shipped) except what loopback needs:
trainers allow 127.0.0.0/8 (storage URLs into private networks are refused by default)
and train on one thread each. The first daemon is the owner (embedded S3 server, no
ledger); it recruits ``--trainers`` of the other daemons for a small digits job. Prints
the job's outcome, how many daemons imported torch (only those that trained should),
their RSS against the others', and the machine's load. ``bench/wan.py`` calls
:func:`job_50_daemons` for its ``job_50_daemons`` line.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# tests/ is not an installed package: its harness is imported from the checkout.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from p2pnode.procs import wait_until  # noqa: E402
from tests.p2pnode.harness import NodeProc, open_network  # noqa: E402

CONFIG = """\
[trainer]
# Every server here is on loopback, which trainers refuse unless allowed.
allow_networks = ["127.0.0.0/8", "::1/128"]
train_threads = 1
"""
"""The daemon's defaults, plus what a loopback network needs."""
JOB: dict[str, Any] = {
    "model": "mlp", "model_params": {"hidden": [32]}, "dataset": "digits", "trainers": 4,
    "rounds": 3, "epochs": 1, "lr": 0.1, "batch_size": 16, "partition": "iid",
    "chunk_samples": 200, "round_deadline_s": 120.0, "offer_window_s": 10.0,
}
Check = Callable[[str, bool, str], None]
TASKED = ("training", "announced", "failed-task")
"""A trainer's job states once it was given a task (protocols/job/trainer.py)."""


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load {one:.1f}/{five:.1f} on {os.cpu_count()} CPUs"


def peak_mib(pid: int) -> float:
    """VmHWM of ``pid`` in MiB (0 when it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def run_job(owner: NodeProc, others: list[NodeProc], spec: dict[str, Any],
            timeout_s: float) -> dict[str, Any]:
    """Submit ``spec`` to ``owner``; return its final ``jobs.status``."""
    job_id = owner.rpc("jobs.submit", {"spec": spec}, timeout=60)["job_id"]

    last: dict[str, Any] = {}

    def finished() -> dict[str, Any] | None:
        owner.check_alive()
        s: dict[str, Any] = owner.rpc("jobs.status", {"job_id": job_id}, timeout=30)
        if s["state"] == "running":
            busy = [p for p, st in (s.get("trainers") or {}).items() if st != "offered"]
            some = [n for n in others if n.peer_id in busy][:2]
            last.update(dropped=s.get("dropped"), trainers=s.get("trainers"),
                        node=owner.rpc("node.status", timeout=30),
                        tgossip=[n.rpc("node.status", timeout=30)["gossip"] for n in some])
        return s if s["state"] not in ("preparing", "running") else None

    done = wait_until(finished, timeout_s, "the job to end", interval_s=2.0)
    node = last.get("node", {})
    print(f"owner while running: messages it dropped by reason {last.get('dropped')}; "
          f"trainer states {sorted((last.get('trainers') or {}).values())}; "
          f"subscription-queue drops {node.get('dropped_messages')}, rate-limited "
          f"{node.get('gossip_rate_limited')}; gossip {node.get('gossip')}; two of its "
          f"trainers' gossip {last.get('tgossip')}")
    return done


def job_50_daemons(check: Check, daemons: int = 49, trainers: int = 4,
                   rounds: int = 3) -> None:
    """Run the job on bootstrap + ``daemons`` daemons; report it through ``check``."""
    spec = {**JOB, "trainers": trainers, "rounds": rounds}
    with tempfile.TemporaryDirectory(prefix="dt-scale-") as tmp:
        t0 = time.monotonic()
        with open_network(Path(tmp), daemons, config=CONFIG) as net:
            up = time.monotonic() - t0
            owner, rest = net.daemons[0], net.daemons[1:]
            ids = {d.peer_id for d in rest}
            try:  # submit once the owner lists every daemon, or after 300 s
                wait_until(lambda: owner.peer_ids() >= ids, 300, "the owner to see all")
            except TimeoutError:
                pass
            seen = len(owner.peer_ids() & ids)
            t1 = time.monotonic()
            job = run_job(owner, rest, spec, 900)
            took = time.monotonic() - t1
            report(check, net.daemons, job, spec, daemons, up, seen, took)


def worked(node: NodeProc) -> bool:
    """Whether ``node`` was given a task (any job state past offering)."""
    jobs = node.rpc("trainer.status", timeout=30).get("jobs", {})
    return any(j["state"] in TASKED or j["rounds_done"] for j in jobs.values())


def report(check: Check, nodes: list[NodeProc], job: dict[str, Any], spec: dict[str, Any],
           daemons: int, up: float, seen: int, took: float) -> None:
    """Print the job's outcome, torch imports and RSS; record the check."""
    status = [n.rpc("node.status", timeout=30) for n in nodes]
    torch = [(n, s) for n, s in zip(nodes[1:], status[1:], strict=True) if s["torch_imported"]]
    plain = [s for s in status[1:] if not s["torch_imported"]]
    tasked = sum(worked(n) for n in nodes[1:])
    history = job.get("history", [])
    done = job["state"] == "done" and len(history) == spec["rounds"]
    acc = history[-1].get("test_accuracy") if history else None
    rss = [s["rss_bytes"] / 2**20 for s in plain]
    print(f"50-process network: bootstrap + {daemons} daemons up in {up:.0f} s; the owner "
          f"listed {seen} of {daemons - 1} others when it submitted; {load()}")
    for r in history:
        print(f"  round {r['round']}: {r.get('round_seconds')} s, closed by "
              f"{r.get('reason') or '?'}, {r.get('accepted')} accepted, {r.get('rejected')} "
              f"rejected, trainers used {len(r.get('trainers', []))}, train seconds "
              f"{r.get('train_seconds')}")
    print(f"daemons that imported torch: {len(torch)} of {daemons - 1}; given a task: "
          f"{tasked}; RSS now without torch: mean "
          f"{statistics.mean(rss) if rss else 0:.0f} MiB, max {max(rss, default=0):.0f} "
          f"MiB; peak with torch: "
          + ", ".join(f"{peak_mib(s['pid']):.0f}" for _, s in torch) + " MiB; owner peak "
          f"{peak_mib(status[0]['pid']):.0f} MiB")
    lazy = all(worked(n) for n, _ in torch)
    full = all(r.get("accepted", 0) >= spec["trainers"] for r in history)
    check("job_50_daemons", done and lazy and full,
          f"bootstrap + owner + {daemons - 1} trainer-capable daemons, digits "
          f"{spec['trainers']} trainers x {spec['rounds']} rounds: {job['state']}, "
          f"{len(history)}/{spec['rounds']} rounds in {took:.0f} s, "
          + ("every round with all its updates" if full else "NOT every round with all its "
             "updates (see the round lines)")
          + f", accuracy {acc}; torch "
          f"imported by {len(torch)} daemons, "
          + ("each of them given a task" if lazy else "some never given a task"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--daemons", type=int, default=49,
                        help="daemons besides the bootstrap node (the first is the owner)")
    parser.add_argument("--trainers", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    results: list[bool] = []

    def check(name: str, ok: bool, line: str) -> None:
        results.append(ok)
        print(f"{name}: {'PASS' if ok else 'FAIL'}: {line}", flush=True)

    print(f"before: {load()}")
    job_50_daemons(check, args.daemons, args.trainers, args.rounds)
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
