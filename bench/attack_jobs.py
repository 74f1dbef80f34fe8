"""bench/attacks.py's attacks through a job: lying trainers, framing, a malicious owner.

The attackers are test code: tests/job/adversary_daemon.py (lying trainers),
tests/job/framing_attacker.py (replayed and forged copies of an honest trainer's
announcement) and tests/job/malicious_owner_daemon.py (an owner whose task URLs name
a canary). Outcomes are read from the owner's job store, job status and peers.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from attack_lines import ANSWER_TIMEOUT_S, Line, Sizes, rss
from scenarios import Run, accuracy

from distro_procs import kill, spawn
from p2pnode.commands.demo import clean_env
from p2pnode.control import call
from p2pnode.procs import Processes, start_embedded_s3, wait_until
from tests.e2e.helpers import answers
from tests.job.adversaries import Straggler
from tests.job.test_trainer_defences import canary_server
from tests.jobspecs import DIGITS_JOB
from tests.p2pnode.harness import REPO

KINDS = ["freeload", "sample_liar", "copycat", "copycat", "sign_flip", "noise", "label_flip",
         "replay", "slow"]

KINDS_SENT = {
    "freeload": "the global model back unchanged, honest metrics",
    "sample_liar": "an honest update claiming 2**64-1 samples",
    "copycat-x2": "two identities uploading identical bytes",
    "sign_flip": "the honest update times -10",
    "noise": "the global model plus N(0, 3^2) noise",
    "label_flip": "an update trained on flipped labels",
    "replay": "its round-1 update again every round",
    "slow": "honest updates 20 s late, claiming health 100",
}


def owner_reps(owner: Path) -> dict[str, float]:
    """The owner's reputation of each peer it knows."""
    return {p["peer_id"]: float(p.get("reputation", 0.0)) for p in call(owner, "node.peers")}


def rows(db: Path, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    """``sql``'s rows from the job store at ``db``, opened read-only."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return con.execute(sql, args).fetchall()
    finally:
        con.close()


# ----- lying trainers (one job, every adversary kind) -----------------------------------


@dataclass
class TrainerJob:
    """What one job with every lying trainer left behind, as measured."""

    peers: list[str]
    updates: list[tuple[Any, ...]]
    """The job store's rows: (round, peer, slot, samples, verdict, reason)."""
    slot_samples: dict[int, int]
    used: set[tuple[int, str]]
    final: dict[str, Any]
    reps: tuple[dict[str, float], dict[str, float]]
    rss: tuple[int, int]
    outcome: str

    def verdicts(self, peer: str) -> str:
        mine = [u for u in self.updates if u[1] == peer]
        if not mine:
            return "no updates (never selected)"
        return ", ".join(f"r{u[0]}:{u[4]}{'/' + u[5] if u[5] else ''}"
                         f"{'+used' if (u[0], peer) in self.used else ''}" for u in mine)

    def never_used(self, peer: str) -> bool:
        return any(u[1] == peer for u in self.updates) and all(
            p != peer for _, p in self.used)

    def line(self, name: str, peer: str, refused: bool, measured: str) -> Line:
        return Line(f"trainer/{name}", refused and self.final["state"] == "done",
                    KINDS_SENT[name], measured, self.outcome,
                    (self.reps[0].get(peer, 0.0), self.reps[1].get(peer, 0.0)), self.rss)


def run_lying_trainers(sizes: Sizes) -> TrainerJob:
    """One multi-Krum job with every kind in :data:`KINDS` and ``sizes.honest`` honest."""
    honest = ["-m", "p2pnode.cli", "daemon"]
    programs = [["-m", "tests.job.adversary_daemon", k] for k in KINDS]
    run = Run(len(KINDS) + sizes.honest, programs + [honest] * sizes.honest)
    try:
        owner_pid = run.procs.children["owner"].pid
        peers = run.peer_ids(range(len(KINDS) + sizes.honest))
        reps0, rss0 = owner_reps(run.owner), rss(owner_pid)
        n = len(peers)
        f = 3 if sizes.honest >= 6 else 1
        # Quorum: the updates that can pass validation, less the straggler, so rounds
        # close without waiting for it.
        spec = {**DIGITS_JOB, "trainers": n, "rounds": sizes.rounds, "rule": "multi_krum",
                "rule_params": {"f": f}, "validate_updates": True, "quorum": n - 6}
        job_id = run.submit(spec)
        final = run.finish(job_id)
        reps1, rss1 = owner_reps(run.owner), rss(owner_pid)
        db = run.owner / "jobs.sqlite3"
        updates = rows(db, "SELECT round, peer, slot, samples, verdict, reason FROM updates "
                       "WHERE job_id = ?", job_id)
        slot_samples = dict(rows(db, "SELECT slot, SUM(samples) FROM chunks WHERE job_id = ? "
                                 "GROUP BY slot", job_id))
    finally:
        run.close()
    return TrainerJob(
        peers, updates, slot_samples,
        {(r["round"], p) for r in final["history"] for p in r["trainers"]}, final,
        (reps0, reps1), (rss0, rss1),
        f"{final['state']}, {len(final['history'])}/{sizes.rounds} rounds, "
        f"accuracy {accuracy(final):.4f}")


def judge(job: TrainerJob, i: int, kind: str) -> Line:
    """Whether the lie of trainer ``i`` (of ``kind``) was refused, from what was measured."""
    peer = job.peers[i]
    mine = [u for u in job.updates if u[1] == peer]
    if kind == "sample_liar":
        honest_w = bool(mine) and all(u[3] == job.slot_samples.get(u[2]) for u in mine)
        return job.line(kind, peer, honest_w,
                        f"weights recorded {[u[3] for u in mine]} = owner's chunk counts: "
                        f"{honest_w}; {job.verdicts(peer)}")
    if kind == "copycat":
        other = job.peers[KINDS.index("copycat", i + 1)]
        return job.line("copycat-x2", peer, job.final["state"] == "done",
                        f"job not failed by identical bytes; copy A {job.verdicts(peer)}; "
                        f"copy B {job.verdicts(other)}")
    if kind == "replay":
        later = [u for u in mine if u[0] > 1]
        caught = bool(later) and all((u[0], peer) not in job.used for u in later)
        return job.line(kind, peer, caught, f"replays (rounds >= 2) kept out of the model: "
                        f"{caught if later else 'not exercised'}; {job.verdicts(peer)}")
    if kind == "slow":
        secs = [r["round_seconds"] for r in job.final["history"]]
        return job.line(kind, peer,
                        job.never_used(peer) and max(secs, default=0) < Straggler.DELAY_S,
                        f"late update never waited for; round seconds {secs}; "
                        f"{job.verdicts(peer)}")
    rep_fell = job.reps[1].get(peer, 0.0) < job.reps[0].get(peer, 0.0)
    refused = job.never_used(peer) and (kind != "freeload" or rep_fell)
    return job.line(kind, peer, refused,
                    f"never in the model: {job.never_used(peer)}; {job.verdicts(peer)}")


def trainer_attacks(sizes: Sizes) -> list[Line]:
    """Every lying trainer in one job; one line per kind (the two copycats share one)."""
    job = run_lying_trainers(sizes)
    first_copy = KINDS.index("copycat")
    return [judge(job, i, kind) for i, kind in enumerate(KINDS)
            if kind != "copycat" or i == first_copy]


# ----- framing an honest trainer ---------------------------------------------------------


def framing(sizes: Sizes) -> Line:
    """Replayed and forged copies of an honest trainer's announcement, sent to the owner."""
    run = Run(3)
    attacker: subprocess.Popen[bytes] | None = None
    try:
        owner_pid = run.procs.children["owner"].pid
        job_id = run.submit({**DIGITS_JOB, "trainers": 3, "rounds": sizes.rounds})
        owner_addr = call(run.owner, "node.id")["addrs"][0]
        out, go = run.work / "framing.out", run.work / "framing.go"
        attacker = spawn(
            [sys.executable, "-m", "tests.job.framing_attacker", "--connect", owner_addr,
             "--job", job_id, "--go-file", str(go), "--copies", str(sizes.framing_copies)],
            out, cwd=REPO)

        def reports() -> list[dict[str, Any]]:
            return [json.loads(x) for x in out.read_text(errors="replace").splitlines()
                    if x.startswith("{")]

        captured = wait_until(lambda: reports()[:1], 240, "an update announcement to copy")[0]
        victim = captured["victim"]
        rep0, rss0 = owner_reps(run.owner).get(victim, 0.0), rss(owner_pid)
        s0 = call(run.owner, "node.status")
        go.touch()
        sent = wait_until(lambda: reports()[1:], 300, "the framing copies")[0]
        final = run.finish(job_id)
        rep1, rss1 = owner_reps(run.owner).get(victim, 0.0), rss(owner_pid)
        s1 = call(run.owner, "node.status")
    finally:
        if attacker is not None:
            kill(attacker)
        run.close()
    after = [r["round"] for r in final["history"]
             if r["round"] > captured["round"] and victim in r["trainers"]]
    limited = s1["gossip_rate_limited"] - s0["gossip_rate_limited"]
    bans = s1["gossip_bans"] - s0["gossip_bans"]
    refused = final["state"] == "done" and rep1 >= rep0 and bool(after)
    return Line(
        "framing/replay+forged", refused,
        f"{sent['replayed']} replayed + {sent['forged']} forged copies of the victim's "
        f"round-{captured['round']} job.update, to the owner",
        f"victim's reputation not lowered: {rep1 >= rep0}; victim selected again in rounds "
        f"{after}; owner job drops {final.get('dropped', {})}; copies refused by the topic "
        f"validator, charged to the attacker: rate_limited +{limited}, bans +{bans}",
        f"{final['state']}, {len(final['history'])}/{sizes.rounds} rounds, "
        f"accuracy {accuracy(final):.4f}", (rep0, rep1), (rss0, rss1))


# ----- a malicious owner against a real trainer -----------------------------------------


def _start_owner_and_trainer(procs: Processes, work: Path, canary_url: str,
                             env: dict[str, str]) -> tuple[Path, Path, int]:
    """Bootstrap, the malicious owner and one real trainer; returns their dirs, its pid."""
    storage = start_embedded_s3(procs, "s3", work / "s3", env)
    maddr = procs.start_bootstrap(work / "bootstrap", env, 60)
    flags = ["--bootstrap", maddr, "--listen", "/ip4/127.0.0.1/tcp/0"]
    owner, trainer = work / "owner", work / "trainer"
    owner.mkdir()
    (owner / "config.toml").write_text(
        "[storage]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in storage.items()))
    # Storage is on 127.0.0.1: the trainer allows that one address, nothing more.
    (work / "trainer.toml").write_text(
        '[trainer]\ntrain_threads = 1\nallow_networks = ["127.0.0.1/32"]\n')
    procs.start("owner", ["-m", "tests.job.malicious_owner_daemon", canary_url,
                          *flags, "--data-dir", str(owner),
                          "--config", str(owner / "config.toml")], env)
    victim = procs.start("trainer", ["-m", "p2pnode.cli", "daemon", *flags,
                                     "--data-dir", str(trainer),
                                     "--config", str(work / "trainer.toml")], env)
    procs.wait(lambda: answers(owner, ANSWER_TIMEOUT_S) and len(call(owner, "node.peers")) >= 1,
               "the owner to see the trainer", 90)
    return owner, trainer, victim.pid


def malicious_owner(work: Path) -> Line:
    """An owner whose task URLs name a canary, against a real trainer daemon."""
    work = work / "owner-attack"
    (work / "logs").mkdir(parents=True)
    procs, env = Processes(work), clean_env()
    try:
        with canary_server("127.0.0.2") as canary:
            owner, trainer, victim = _start_owner_and_trainer(procs, work, canary.url(""), env)
            rss0 = rss(victim)
            job_id = call(owner, "jobs.submit", {"spec": {**DIGITS_JOB, "trainers": 1, "rounds": 1,
                                                          "round_deadline_s": 30.0}})["job_id"]
            log = procs.log_path("owner")

            def refusals() -> list[str]:
                return [x for x in log.read_text(errors="replace").splitlines()
                        if "refused slot" in x or " refused: " in x]

            try:
                procs.wait(lambda: refusals() and call(owner, "jobs.status", {"job_id": job_id})[
                    "state"] not in ("preparing", "running"), "the trainer's refusals", 120)
            except TimeoutError:
                pass
            reasons = sorted({x.rsplit(": ", 1)[-1] for x in refusals()})
            status = call(owner, "jobs.status", {"job_id": job_id})
            hits = list(canary.hits)
            rss1, alive = rss(victim), answers(trainer, ANSWER_TIMEOUT_S)
    finally:
        procs.stop_all()
    return Line(
        "owner/urls-to-canary", not hits and bool(reasons) and alive,
        f"a task (real trainer daemon process) whose model, chunk, upload and update URLs "
        f"name a canary at {canary.host}",
        f"canary requests={len(hits)}; trainer refusals seen by the owner {len(refusals())} "
        f"with reasons {reasons}; trainer answers: {alive}",
        f"{status['state']} (the owner's own job, round {status['round']})", None, (rss0, rss1))
