"""Every issue-11 attack at full size, against real daemon processes (not a test).

One line per attack: what was sent, what was refused (measured: node.status counters,
the owner's job store and job status, canary request counts, replies on the control
socket), the job outcome where a job is involved, the victim's reputation at the
owner before and after where it applies, and the attacked daemon's RSS before and
after (psutil). An attack counts as refused only when the measured outcome shows it.
The last line is ``attacks_refused=N/M``.

    .venv/bin/python bench/attacks.py            # full size (100,000-envelope floods)
    .venv/bin/python bench/attacks.py --small    # quick run: small floods, short jobs
    .venv/bin/python bench/attacks.py --only gossip

Attackers are test code: tests/p2pnode/flood_attacker.py (gossip floods),
tests/job/adversary_daemon.py (lying trainers), tests/job/framing_attacker.py
(replayed and forged copies of an honest trainer's announcement) and
tests/job/malicious_owner_daemon.py (an owner whose task URLs name a canary).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.* are test code, not installed
from scenarios import BASE, Run, accuracy  # noqa: E402 - bench/scenarios.py, one job's processes

from p2pnode.commands.demo import clean_env
from p2pnode.control import call
from p2pnode.errors import ControlError
from p2pnode.procs import Processes, start_embedded_s3, wait_until
from tests.e2e.test_attacks_gossip import LET_FLOODS_IN, seqs
from tests.job.adversaries import Straggler
from tests.job.test_trainer_defences import canary_server
from tests.p2pnode.harness import REPO, NodeProc, json_lines, open_network


@dataclass
class Sizes:
    """How big each attack is."""

    flood: int
    control_payloads: int
    honest: int
    rounds: int
    framing_copies: int


FULL = Sizes(flood=100_000, control_payloads=1_000, honest=6, rounds=5, framing_copies=1_000)
SMALL = Sizes(flood=3_000, control_payloads=50, honest=2, rounds=3, framing_copies=50)


@dataclass
class Line:
    """One attack's measured figures."""

    name: str
    refused: bool
    sent: str
    measured: str
    job: str = "-"
    rep: tuple[float, float] | None = None
    rss: tuple[int, int] | None = None

    def __str__(self) -> str:
        rep = f"{self.rep[0]:+.2f} -> {self.rep[1]:+.2f}" if self.rep else "-"
        mib = 1024 * 1024
        rss = f"{self.rss[0] / mib:.0f} -> {self.rss[1] / mib:.0f} MiB" if self.rss else "-"
        verdict = "REFUSED" if self.refused else "NOT REFUSED"
        return (f"{self.name:24s} {verdict:11s} | sent: {self.sent} | refused: {self.measured}"
                f" | job: {self.job} | victim rep: {rep} | rss: {rss}")


def rss(pid: int) -> int:
    """Resident set size of process ``pid`` (0 once it is gone)."""
    try:
        return int(psutil.Process(pid).memory_info().rss)
    except psutil.NoSuchProcess:
        return 0


def answers(data_dir: Path) -> bool:
    try:
        call(data_dir, "node.id", timeout=5)
        return True
    except ControlError:
        return False


# ----- gossip floods (two bare daemons) ----------------------------------------------


@contextmanager
def flood(work: Path, targets: list[NodeProc], count: int, kind: str) -> Iterator[
        tuple[subprocess.Popen[bytes], Path]]:
    """Run tests.p2pnode.flood_attacker against ``targets``; yield it and its output file."""
    out = work / f"attacker-{kind}.out"
    argv = [sys.executable, "-m", "tests.p2pnode.flood_attacker", "--count", str(count),
            "--kind", kind]
    for t in targets:
        argv += ["--connect", t.addrs[0]]
    with out.open("wb") as f:
        proc = subprocess.Popen(argv, cwd=REPO, stdout=f, stderr=subprocess.STDOUT)
    try:
        yield proc, out
    finally:
        proc.kill()
        proc.wait(10)


def flood_report(proc: subprocess.Popen[bytes], out: Path, timeout_s: float) -> dict[str, Any]:
    def report() -> dict[str, Any] | None:
        for line in out.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                return dict(json.loads(line))
        if proc.poll() is not None:
            raise RuntimeError(f"attacker exited: {out.read_text(errors='replace')[-500:]}")
        return None

    return wait_until(report, timeout_s, "the attacker's flood")


def presence_flows(a: NodeProc, b: NodeProc, timeout_s: float = 30.0) -> bool:
    """Whether each daemon accepts 3 fresh presence messages of the other in ``timeout_s``."""
    before_a, before_b = seqs(a).get(b.peer_id, -1), seqs(b).get(a.peer_id, -1)
    try:
        wait_until(lambda: seqs(a).get(b.peer_id, -1) > before_a + 2
                   and seqs(b).get(a.peer_id, -1) > before_b + 2, timeout_s, "presence")
        return True
    except TimeoutError:
        return False


def gossip_flood(work: Path, kind: str, count: int, let_in: bool) -> Line:
    with open_network(work / kind, 2, extra_toml=LET_FLOODS_IN if let_in else "") as net:
        a, b = net.daemons
        wait_until(lambda: a.peer_ids() == {b.peer_id} and b.peer_ids() == {a.peer_id}, 60,
                   "two daemons to see each other")
        assert a.proc is not None
        s0, rss0, seq0 = a.rpc("node.status"), rss(a.proc.pid), seqs(a).get(b.peer_id, -1)
        t0 = time.monotonic()
        with flood(work, [a, b], count, kind) as (proc, out):
            report = flood_report(proc, out, 60 + count / 50)
            seconds = time.monotonic() - t0
            during = seqs(a).get(b.peer_id, -1) - seq0
            flows = presence_flows(a, b)
            s1 = a.rpc("node.status")
            attacker_listed = report["peer_id"] in a.peer_ids()
        alive = answers(a.data_dir) and answers(b.data_dir)
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


# ----- control socket -----------------------------------------------------------------


NESTED = [
    b"[" * 50_000 + b"]" * 50_000 + b"\n",
    b'{"jsonrpc":"2.0","id":1,"method":"node.id","params":'
    + b'{"a":' * 20_000 + b"1" + b"}" * 20_001 + b"\n",
    b"\xff\xfe[[[{\n",
]


def control_attacks(work: Path, payloads: int) -> list[Line]:
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


# ----- lying trainers (one job, every adversary kind) -----------------------------------


KINDS = ["freeload", "sample_liar", "copycat", "copycat", "sign_flip", "noise", "label_flip",
         "replay", "slow"]


def owner_reps(owner: Path) -> dict[str, float]:
    return {p["peer_id"]: float(p.get("reputation", 0.0)) for p in call(owner, "node.peers")}


def rows(db: Path, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return con.execute(sql, args).fetchall()
    finally:
        con.close()


def trainer_attacks(sizes: Sizes) -> list[Line]:
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
        spec = {**BASE, "trainers": n, "rounds": sizes.rounds, "rule": "multi_krum",
                "rule_params": {"f": f}, "validate_updates": True, "quorum": n - 6}
        job_id = run.submit(spec)
        final = run.finish(job_id)
        reps1, rss1 = owner_reps(run.owner), rss(owner_pid)
        db = run.owner / "jobs.sqlite3"
        updates = rows(db, "SELECT round, peer, slot, samples, verdict, reason FROM updates "
                       "WHERE job_id = ?", job_id)
        slot_samples = dict(rows(db, "SELECT slot, SUM(samples) FROM chunks WHERE job_id = ? "
                                 "GROUP BY slot", job_id))
        used = {(r["round"], p) for r in final["history"] for p in r["trainers"]}
        outcome = (f"{final['state']}, {len(final['history'])}/{sizes.rounds} rounds, "
                   f"accuracy {accuracy(final):.4f}")
    finally:
        run.close()

    def verdicts(peer: str) -> str:
        mine = [u for u in updates if u[1] == peer]
        if not mine:
            return "no updates (never selected)"
        return ", ".join(f"r{u[0]}:{u[4]}{'/' + u[5] if u[5] else ''}"
                         f"{'+used' if (u[0], peer) in used else ''}" for u in mine)

    def line(name: str, i: int, refused: bool, measured: str) -> Line:
        return Line(f"trainer/{name}", refused and final["state"] == "done", KINDS_SENT[name],
                    measured, outcome, (reps0.get(peers[i], 0.0), reps1.get(peers[i], 0.0)),
                    (rss0, rss1))

    def never_used(i: int) -> bool:
        return any(u[1] == peers[i] for u in updates) and all(
            p != peers[i] for _, p in used)

    out = []
    for i, kind in enumerate(KINDS):
        if kind == "copycat" and i != KINDS.index("copycat"):
            continue
        if kind == "sample_liar":
            mine = [u for u in updates if u[1] == peers[i]]
            honest_w = bool(mine) and all(u[3] == slot_samples.get(u[2]) for u in mine)
            out.append(line(kind, i, honest_w,
                            f"weights recorded {[u[3] for u in mine]} = owner's chunk counts: "
                            f"{honest_w}; {verdicts(peers[i])}"))
        elif kind == "copycat":
            j = KINDS.index("copycat", i + 1)
            out.append(line("copycat-x2", i, final["state"] == "done",
                            f"job not failed by identical bytes; copy A {verdicts(peers[i])}; "
                            f"copy B {verdicts(peers[j])}"))
        elif kind == "replay":
            later = [u for u in updates if u[1] == peers[i] and u[0] > 1]
            caught = bool(later) and all((u[0], peers[i]) not in used for u in later)
            out.append(line(kind, i, caught, f"replays (rounds >= 2) kept out of the model: "
                            f"{caught if later else 'not exercised'}; {verdicts(peers[i])}"))
        elif kind == "slow":
            secs = [r["round_seconds"] for r in final["history"]]
            out.append(line(kind, i, never_used(i) and max(secs, default=0) < Straggler.DELAY_S,
                            f"late update never waited for; round seconds {secs}; "
                            f"{verdicts(peers[i])}"))
        else:
            rep_fell = reps1.get(peers[i], 0.0) < reps0.get(peers[i], 0.0)
            refused = never_used(i) and (kind != "freeload" or rep_fell)
            out.append(line(kind, i, refused, f"never in the model: {never_used(i)}; "
                            f"{verdicts(peers[i])}"))
    return out


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


# ----- framing an honest trainer ---------------------------------------------------------


def framing(sizes: Sizes) -> Line:
    run = Run(3)
    attacker: subprocess.Popen[bytes] | None = None
    try:
        owner_pid = run.procs.children["owner"].pid
        job_id = run.submit({**BASE, "trainers": 3, "rounds": sizes.rounds})
        owner_addr = call(run.owner, "node.id")["addrs"][0]
        out = run.work / "framing.out"
        with out.open("wb") as f:
            attacker = subprocess.Popen(
                [sys.executable, "-m", "tests.job.framing_attacker", "--connect", owner_addr,
                 "--job", job_id, "--copies", str(sizes.framing_copies)],
                cwd=REPO, stdin=subprocess.PIPE, stdout=f, stderr=subprocess.STDOUT)

        def reports() -> list[dict[str, Any]]:
            return [json.loads(x) for x in out.read_text(errors="replace").splitlines()
                    if x.startswith("{")]

        captured = wait_until(lambda: reports()[:1], 240, "an update announcement to copy")[0]
        victim = captured["victim"]
        rep0, rss0 = owner_reps(run.owner).get(victim, 0.0), rss(owner_pid)
        s0 = call(run.owner, "node.status")
        assert attacker.stdin is not None
        attacker.stdin.write(b"go\n")
        attacker.stdin.flush()
        sent = wait_until(lambda: reports()[1:], 300, "the framing copies")[0]
        final = run.finish(job_id)
        rep1, rss1 = owner_reps(run.owner).get(victim, 0.0), rss(owner_pid)
        s1 = call(run.owner, "node.status")
    finally:
        if attacker is not None:
            attacker.kill()
            attacker.wait(10)
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


def malicious_owner(work: Path) -> Line:
    work = work / "owner-attack"
    (work / "logs").mkdir(parents=True)
    procs, env = Processes(work), clean_env()
    try:
        with canary_server("127.0.0.2") as canary:
            storage = start_embedded_s3(procs, "s3", work / "s3", env)
            boot = work / "bootstrap"
            procs.start("bootstrap", ["-m", "p2pnode.cli", "bootstrap", "--data-dir", str(boot),
                                      "--listen", "/ip4/127.0.0.1/tcp/0"], env)
            maddr_file = boot / "multiaddr"
            maddr = procs.wait(lambda: maddr_file.read_text().strip() if maddr_file.exists()
                               else None, "bootstrap", 60)
            flags = ["--bootstrap", maddr, "--listen", "/ip4/127.0.0.1/tcp/0"]
            owner, trainer = work / "owner", work / "trainer"
            owner.mkdir()
            (owner / "config.toml").write_text(
                "[storage]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in storage.items()))
            # Storage is on 127.0.0.1: the trainer allows that one address, nothing more.
            (work / "trainer.toml").write_text(
                '[trainer]\ntrain_threads = 1\nallow_networks = ["127.0.0.1/32"]\n')
            procs.start("owner", ["-m", "tests.job.malicious_owner_daemon", canary.url(""),
                                  *flags, "--data-dir", str(owner),
                                  "--config", str(owner / "config.toml")], env)
            victim = procs.start("trainer", ["-m", "p2pnode.cli", "daemon", *flags,
                                             "--data-dir", str(trainer),
                                             "--config", str(work / "trainer.toml")], env)
            procs.wait(lambda: answers(owner) and len(call(owner, "node.peers")) >= 1,
                       "the owner to see the trainer", 90)
            rss0 = rss(victim.pid)
            job_id = call(owner, "jobs.submit", {"spec": {**BASE, "trainers": 1, "rounds": 1,
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
            rss1, alive = rss(victim.pid), answers(trainer)
    finally:
        procs.stop_all()
    return Line(
        "owner/urls-to-canary", not hits and bool(reasons) and alive,
        f"a task (real trainer daemon process) whose model, chunk, upload and update URLs "
        f"name a canary at {canary.host}",
        f"canary requests={len(hits)}; trainer refusals seen by the owner {len(refusals())} "
        f"with reasons {reasons}; trainer answers: {alive}",
        f"{status['state']} (the owner's own job, round {status['round']})", None, (rss0, rss1))


# ----- main -----------------------------------------------------------------------------


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="quick sizes (see SMALL)")
    parser.add_argument("--only", default=None, help="run only attack groups whose name has this")
    args = parser.parse_args()
    sizes = SMALL if args.small else FULL
    signal.signal(signal.SIGTERM, _interrupt)  # unwind, so every run stops its processes
    work = Path(tempfile.mkdtemp(prefix="attacks-"))
    print(f"sizes: {sizes}; work dir {work}", flush=True)
    groups: list[tuple[str, Callable[[], list[Line]]]] = [
        ("gossip/future-flood", lambda: [gossip_flood(work, "future", sizes.flood, True)]),
        ("gossip/junk-flood", lambda: [gossip_flood(work, "junk", sizes.flood, False)]),
        ("control", lambda: control_attacks(work, sizes.control_payloads)),
        ("owner/urls-to-canary", lambda: [malicious_owner(work)]),
        ("framing", lambda: [framing(sizes)]),
        ("trainer", lambda: trainer_attacks(sizes)),
    ]
    results: list[Line] = []
    for name, fn in groups:
        if args.only and args.only not in name:
            continue
        t0 = time.monotonic()
        try:
            lines = fn()
        except Exception as exc:
            lines = [Line(name, False, "-", f"error: {type(exc).__name__}: {exc}")]
        for ln in lines:
            print(f"{ln} | {time.monotonic() - t0:.0f}s", flush=True)
        results += lines
    refused = sum(ln.refused for ln in results)
    print(f"attacks_refused={refused}/{len(results)}")
    return 0 if refused == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
