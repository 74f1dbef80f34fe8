"""Mixed-speed rounds, equal versus sized shares (issue 17; not a test).

    .venv/bin/python bench/sized.py [--keep DIR]

bench/wan.py's ``sized_shares`` line, runnable alone. Needs root (network namespaces
and tc; tests/netns/lab.py). A bootstrap node, an owner and three trainer daemons each
in its own namespace; one trainer's WAN link is capped by tc tbf. The same three
trainers run the same job four times, ``shares`` equal, sized, sized, equal (ABBA: a
load that rises or falls over the run, from whatever else shares the machine, weighs
on both modes alike). Every round of every job is printed: its seconds, the owner's
plan (``jobs.status`` ``shares``: why, the predicted round time) and each trainer's
samples. The check compares the mean time of the rounds sizing can act on (from
:data:`FIRST_SIZED`) and can fail: it needs the sized jobs' rounds to be at least
:data:`MIN_GAIN` shorter. ``--keep DIR`` keeps every daemon's log there (the owner's
has one line per finished task with the measured figures, one per round with the plan).

The scenario is one where the link, not the CPU, makes the slow trainer slow: each
round the model (3.2 MB) goes down and an update as big comes up, ~12 s at 4 Mbit/s
(a home uplink), while 3 epochs of a 1000-sample share take 0.4-6 s on this machine
(idle to a load average of 30). With equal
shares every round waits for the slow link; sized, the others take its data (all of
it when even a small share would end the round later than they need for everything).
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

# tests/ and bench/ are not installed packages: import them from the checkout.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from p2pnode.procs import wait_until  # noqa: E402
from tests.netns.lab import Lab, unavailable_reason  # noqa: E402
from tests.netns.nodes import LAB_CONFIG, Nodes  # noqa: E402
from tests.p2pnode.harness import NodeProc  # noqa: E402

Check = Callable[[str, bool, str], None]

SIZED_JOB = {
    "model": "mlp", "model_params": {"hidden": [1024]}, "dataset": "mnist", "limit": 3000,
    "trainers": 3, "rounds": 4, "epochs": 3, "lr": 0.05, "batch_size": 32,
    "partition": "iid", "chunk_samples": 100, "round_deadline_s": 120.0,
}
SLOW_LINK = "4mbit"
FIRST_SIZED = 2
"""The first round whose shares can follow measured speeds (round 1's tasks are the
probe: ``[owner] shares_min_tasks`` 1; a trainer may sit a round out from round 3,
``shares_sit_out_tasks`` 2)."""
ORDER = ("equal", "sized", "sized", "equal")
MIN_GAIN = 0.1


def run_job(owner: NodeProc, nodes: Nodes, spec: dict[str, Any],
            timeout_s: float) -> tuple[dict[str, Any], dict[int, dict[str, Any]]]:
    """Submit ``spec``; its final ``jobs.status`` and the ``shares`` of each round."""
    job_id = owner.rpc("jobs.submit", {"spec": spec})["job_id"]
    plans: dict[int, dict[str, Any]] = {}

    def finished() -> dict[str, Any] | None:
        for node in nodes.all:
            node.check_alive()
        s: dict[str, Any] = owner.rpc("jobs.status", {"job_id": job_id})
        shares = s.get("shares") or {}
        if isinstance(shares.get("round"), int) and shares["round"] not in plans:
            plans[shares["round"]] = shares
        return s if s["state"] not in ("preparing", "running") else None

    return wait_until(finished, timeout_s, "the job to end", interval_s=0.25), plans


def round_line(mode: str, r: dict[str, Any], plan: dict[str, Any] | None,
               names: dict[str, str]) -> str:
    """One round of one job: seconds, the owner's plan, each trainer's samples."""
    got = {names.get(u["peer"], u["peer"][:8]): u["samples"] for u in r["updates"]}
    total = max(1, sum(got.values()))
    line = (f"  {mode:5} round {r['round']}: {r['round_seconds']:.1f} s; samples "
            + ", ".join(f"{n} {got.get(n, 0)} ({got.get(n, 0) / total:.0%})"
                        for n in sorted(names.values())))
    if plan:
        line += f"; plan {plan.get('plan')}, predicted {plan.get('predicted_round_s')} s"
    return line


def verdict(times: dict[str, list[float]], shares: dict[str, list[float]]) -> tuple[bool, str]:
    """The check and its line from the compared rounds' seconds and slow shares."""
    mean = {m: statistics.mean(ts) for m, ts in times.items()}
    gain = 1 - mean["sized"] / mean["equal"]
    return gain >= MIN_GAIN, (
        f"2 open links + 1 at {SLOW_LINK} (tc tbf), MNIST MLP 1024 (3.2 MB), "
        f"{SIZED_JOB['epochs']} epochs, jobs {'/'.join(ORDER)}: rounds {FIRST_SIZED}-"
        f"{SIZED_JOB['rounds']} took {mean['equal']:.1f} s on average with equal shares, "
        f"{mean['sized']:.1f} s sized ({gain:.0%} sooner; needs >= {MIN_GAIN:.0%}; medians "
        f"{statistics.median(times['equal']):.1f} and {statistics.median(times['sized']):.1f} s); "
        f"each: equal {[round(t, 1) for t in times['equal']]}, sized "
        f"{[round(t, 1) for t in times['sized']]}; the slow trainer's share of those "
        f"rounds' samples {statistics.mean(shares['sized']):.0%} sized (each "
        f"{[f'{x:.0%}' for x in shares['sized']]}), "
        f"{statistics.mean(shares['equal']):.0%} equal")


def start_lab(lab: Lab, nodes: Nodes, tmp: Path) -> tuple[NodeProc, list[NodeProc]]:
    """Bootstrap, owner (no spot checks) and three trainers, the last on SLOW_LINK."""
    boot_ns, _ = lab.public_host("boot")
    owner_ns, _ = lab.public_host("owner")
    hosts = [lab.public_host(f"t{i}")[0] for i in range(3)]
    lab.limit(hosts[2], SLOW_LINK)
    boot = nodes.start(boot_ns, "boot", "bootstrap")
    boot.wait_ready()
    addr = (boot.data_dir / "multiaddr").read_text().strip()
    owner_config = tmp / "owner.toml"
    owner_config.write_text(LAB_CONFIG + "\n[owner]\nspot_check_rate = 0.0\n")
    owner = nodes.start(owner_ns, "owner", "daemon", "--bootstrap", addr, config=owner_config)
    trainers = [nodes.start(ns, f"t{i}", "daemon", "--bootstrap", addr)
                for i, ns in enumerate(hosts)]
    for node in [owner, *trainers]:
        node.wait_ready()
    wait_until(lambda: owner.peer_ids() >= {t.peer_id for t in trainers}, 60,
               "the owner to see the trainers")
    return owner, trainers


def one_job(owner: NodeProc, nodes: Nodes, mode: str, slow: str,
            names: dict[str, str]) -> tuple[list[float], list[float], list[str]]:
    """Run the job once with ``shares = mode`` and print every round.

    Returns:
        The compared rounds' seconds, the slow trainer's share of each, and why any
        of them cannot be compared (the job failed; a round trained less than all the
        data because a trainer was lost, which makes it shorter for no merit of the
        plan).
    """
    load, t0 = os.getloadavg()[0], time.monotonic()
    job, plans = run_job(owner, nodes, {**SIZED_JOB, "shares": mode}, 900)
    rounds = job.get("history", [])
    print(f"sized_shares: {mode} job {job['state']} in {time.monotonic() - t0:.0f} s "
          f"(load average {load:.1f} -> {os.getloadavg()[0]:.1f})", flush=True)
    for r in rounds:
        print(round_line(mode, r, plans.get(r["round"]), names), flush=True)
    if job["state"] != "done" or len(rounds) != SIZED_JOB["rounds"]:
        return [], [], [f"the {mode} job ended {job['state']}: {job.get('error')}"]

    def per_peer(r: dict[str, Any]) -> dict[str, int]:
        return {u["peer"]: u["samples"] for u in r["updates"]
                if u["verdict"] in ("accepted", "late")}

    full = max(sum(per_peer(r).values()) for r in rounds)
    times, shares, problems = [], [], []
    for r in rounds[FIRST_SIZED - 1:]:
        got = per_peer(r)
        times.append(float(r["round_seconds"]))
        shares.append(got.get(slow, 0) / max(1, sum(got.values())))
        if sum(got.values()) < full:
            problems.append(f"{mode} round {r['round']} trained {sum(got.values())} of "
                            f"{full} samples (a trainer was lost)")
    return times, shares, problems


def sized_shares(check: Check, keep: Path | None = None) -> None:
    """Two trainers on open links and one on a tc-limited one: equal versus sized shares.

    The owner's random spot checks are off: a re-run adds its own time to whichever
    round draws it, by chance.
    """
    why = unavailable_reason()
    if why is not None:
        check("sized_shares", False, f"not done: network namespaces unavailable: {why}")
        return
    with tempfile.TemporaryDirectory(prefix="dt-sized-") as tmp, Lab() as lab:
        root = keep or Path(tmp)
        nodes = Nodes(lab, root)
        try:
            owner, trainers = start_lab(lab, nodes, root)
            names = {t.peer_id: f"t{i}" for i, t in enumerate(trainers)}
            names[trainers[2].peer_id] = f"t2 ({SLOW_LINK})"
            times: dict[str, list[float]] = {"equal": [], "sized": []}
            shares: dict[str, list[float]] = {"equal": [], "sized": []}
            problems: list[str] = []
            for mode in ORDER:
                t, sh, bad = one_job(owner, nodes, mode, trainers[2].peer_id, names)
                times[mode] += t
                shares[mode] += sh
                problems += bad
                if bad and not t:
                    break
            ok, line = (verdict(times, shares) if times["equal"] and times["sized"]
                        else (False, ""))
            if problems:
                ok, line = False, f"not comparable: {'; '.join(problems)}. {line}".strip()
            check("sized_shares", ok, line)
        finally:
            nodes.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, default=None,
                        help="keep the daemons' data and logs in this (new) folder")
    args = parser.parse_args()

    def check(name: str, ok: bool, line: str) -> None:
        print(f"{name}: {'PASS' if ok else 'FAIL'}: {line}", flush=True)

    sized_shares(check, args.keep)
    return 0


if __name__ == "__main__":
    sys.exit(main())
