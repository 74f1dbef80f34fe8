"""Every resilience scenario at full size, over real processes (not a test).

Each scenario starts its own embedded S3 server, bootstrap node, owner daemon and
trainer daemons (adversarial trainers are tests/job/adversaries.py behaviours run by
tests/job/adversary_daemon.py), runs a job to its end and checks the outcome a user
cares about. One line per scenario with its figures; the last line is
``scenarios_passed=N/M``.

    .venv/bin/python bench/scenarios.py [--only NAME] [--rounds 8]
"""

from __future__ import annotations

import argparse
import functools
import signal
import sqlite3
import sys
from collections import Counter
from collections.abc import Callable
from typing import Any

from localrun import UNFINISHED, run_each, start_storage

from p2pnode.commands.demo import Cluster, clean_env, launch
from p2pnode.control import call
from p2pnode.errors import ControlError
from p2pnode.procs import start_embedded_s3, wait_until
from protocols.job.selection import ReputationConfig
from tests.jobspecs import DIGITS_JOB


class Run:
    """One scenario's processes: S3 server, bootstrap, owner, trainers."""

    def __init__(
        self, trainers: int, programs: list[list[str]] | None = None, owner_toml: str = ""
    ) -> None:
        self.procs, self.s3 = start_storage("scenario-")
        self.work = self.procs.work
        self.cluster: Cluster = launch(
            self.work, self.procs, self.s3, trainers, say=lambda _m: None,
            trainer_programs=programs, owner_toml=owner_toml,
        )
        self.owner = self.cluster.owner_dir

    def submit(self, spec: dict[str, Any]) -> str:
        job_id: str = call(self.owner, "jobs.submit", {"spec": spec})["job_id"]
        return job_id

    def status(self, job_id: str) -> dict[str, Any]:
        try:
            result: dict[str, Any] = call(self.owner, "jobs.status", {"job_id": job_id})
            return result
        except ControlError:
            return {}

    def wait(
        self, job_id: str, until: Callable[[dict[str, Any]], bool], timeout: float, what: str
    ) -> dict[str, Any]:
        def reached() -> dict[str, Any] | None:
            s = self.status(job_id)
            return s if s and until(s) else None

        return wait_until(reached, timeout, what)

    def finish(self, job_id: str, timeout: float = 600) -> dict[str, Any]:
        return self.wait(job_id, lambda s: s["state"] not in UNFINISHED, timeout, "job end")

    def trainer_name(self, peer: str) -> str:
        for i in range(len(self.cluster.trainer_argv)):
            try:
                if call(self.work / f"trainer-{i}", "node.id")["peer_id"] == peer:
                    return f"trainer-{i}"
            except ControlError:
                continue
        raise KeyError(peer)

    def reputation(self) -> dict[str, float]:
        db = sqlite3.connect(f"file:{self.owner / 'jobs.sqlite3'}?mode=ro", uri=True)
        try:
            return {p: s for p, s in db.execute("SELECT peer, score FROM reputation")}
        finally:
            db.close()

    def peer_ids(self, indices: range) -> list[str]:
        return [call(self.work / f"trainer-{i}", "node.id")["peer_id"] for i in indices]

    def close(self) -> None:
        self.procs.stop_all()

    def __enter__(self) -> Run:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def accuracy(status: dict[str, Any]) -> float:
    return float(status["history"][-1]["test_accuracy"]) if status.get("history") else 0.0


NAIVE_OWNER_TOML = (
    "[owner]\nspot_check_rate = 0.0\nprobation_checks = 0\nquarantine_contributions = 0\n"
)


def byzantine(kind: str | None, rule: str, validate: bool, rounds: int) -> tuple[float, Any]:
    honest = ["-m", "p2pnode.cli", "daemon"]
    bad = ["-m", "tests.job.adversary_daemon", kind] if kind else honest
    # No validation means a naive owner: no re-runs and no quarantine either
    # (docs/verification.md), so the attack's damage shows.
    naive = "" if validate else NAIVE_OWNER_TOML
    with Run(10, [bad] * 3 + [honest] * 7, owner_toml=naive) as run:
        params = {"f": 3} if rule in ("multi_krum", "krum", "median") else {}
        spec = {
            **DIGITS_JOB,
            "trainers": 10,
            "rounds": rounds,
            "rule": rule,
            "rule_params": params,
            "validate_updates": validate,
        }
        status = run.finish(run.submit(spec))
        bad_ids = run.peer_ids(range(3))
        rep = run.reputation()
        excluded = all(rep.get(p, 0.0) < ReputationConfig().floor for p in bad_ids)
        return accuracy(status), (status, excluded)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def baseline(rounds: int, honest: dict[str, float]) -> tuple[bool, str]:
    """All honest trainers; records the accuracy the attacked runs are held to."""
    acc, (status, _) = byzantine(None, "multi_krum", True, rounds)
    honest["acc"] = acc
    return status["state"] == "done", f"all honest, multi_krum: accuracy {acc:.4f}"


def attacked(kind: str, rounds: int, honest: dict[str, float]) -> tuple[bool, str]:
    """3/10 trainers of ``kind``, multi-Krum and validation: accuracy holds, they are found."""
    acc, (status, excluded) = byzantine(kind, "multi_krum", True, rounds)
    base = honest.get("acc", 0.0)
    ok = status["state"] == "done" and acc >= base - 0.02 and excluded
    reasons = [r for rec in status["history"] for r in rec["rejected_reasons"].values()]
    if kind == "replay":  # a replayed update must be detected, not just survived
        ok = ok and "replayed" in reasons
    return ok, (
        f"3/10 {kind}, multi_krum+validation: accuracy {acc:.4f} vs honest "
        f"{base:.4f}; adversaries below reputation floor: {excluded}; "
        f"rejections {dict(Counter(reasons))}"
    )


def naive(rounds: int, honest: dict[str, float]) -> tuple[bool, str]:
    """The same attack on plain FedAvg without validation must hurt (the test can fail)."""
    acc, _ = byzantine("sign_flip", "fedavg", False, rounds)
    base = honest.get("acc", 0.0)
    return acc < base - 0.2, (
        f"3/10 sign_flip, plain fedavg, no validation: accuracy "
        f"{acc:.4f} (degraded vs {base:.4f})"
    )


def churn(rounds: int) -> tuple[bool, str]:
    """A third of the trainers killed in round 2: spares fill their slots."""
    with Run(9) as run:
        job = run.submit({**DIGITS_JOB, "trainers": 6, "spares": 3, "rounds": rounds, "epochs": 20,
                          "round_deadline_s": 60.0})
        s = run.wait(
            job,
            lambda s: (
                s.get("round", 0) >= 2
                and sum(st == "training" for st in s["trainers"].values()) >= 3
            ),
            300,
            "round 2",
        )
        victims = [p for p, st in s["trainers"].items() if st == "training"][:3]
        for p in victims:
            run.procs.kill(run.trainer_name(p))
        final = run.finish(job)
        done = [r["round"] for r in final["history"]]
        full = all(r["accepted"] == 6 for r in final["history"])
        ok = final["state"] == "done" and done == list(range(1, rounds + 1)) and full
        return ok, (
            f"killed 3/9 trainers in round 2: {len(done)}/{rounds} rounds, "
            f"accepted per round {[r['accepted'] for r in final['history']]}"
        )


def straggler() -> tuple[bool, str]:
    """One trainer 20 s late: a backup wins round 1, a spare steps in after."""
    slow = ["-m", "tests.job.adversary_daemon", "slow"]
    honest = ["-m", "p2pnode.cli", "daemon"]
    with Run(4, [slow] + [honest] * 3) as run:
        job = run.submit(
            {**DIGITS_JOB, "trainers": 3, "spares": 1, "rounds": 2, "round_deadline_s": 25.0}
        )
        final = run.finish(job)
        slow_id = run.peer_ids(range(1))[0]
        secs = [r["round_seconds"] for r in final["history"]]
        ok = (
            final["state"] == "done"
            and all(r["accepted"] == 3 for r in final["history"])
            and all(slow_id not in r["trainers"] for r in final["history"])
            # Round 1: the backup (sent at 15 s) wins before the straggler (20 s).
            # Later rounds: the straggler, still busy, refuses and a spare steps in.
            and 15.0 <= secs[0] < 20.0
        )
        return ok, (
            f"one trainer (picked first) 20 s late, deadline 25 s, backups at 15 s: "
            f"round seconds {secs}, straggler's update used: "
            f"{any(slow_id in r['trainers'] for r in final['history'])}"
        )


def _restart_in_round_2(
    rounds: int, victim: str, reached: str, restart: Callable[[Run], str]
) -> tuple[dict[str, Any], str]:
    """A 3-trainer job, ``victim`` killed at 2 of status field ``reached``, then restarted.

    ``restart`` starts the replacement and returns its child name. Returns the job's
    final status and the replacement's log.
    """
    with Run(3) as run:
        job = run.submit({**DIGITS_JOB, "trainers": 3, "rounds": rounds})
        run.wait(job, lambda s: s.get(reached, 0) >= 2, 300, f"{reached} 2")
        run.procs.kill(victim)
        name = restart(run)
        final = run.finish(job)
        return final, run.procs.log_path(name).read_text()


def _start_owner(run: Run) -> str:
    run.procs.start("owner-restarted", run.cluster.owner_argv, clean_env())
    return "owner-restarted"


def _start_s3(run: Run) -> str:
    port = int(run.s3["endpoint"].rsplit(":", 1)[1])
    start_embedded_s3(run.procs, "s3-restarted", run.work / "s3", clean_env(), port)
    return "s3-restarted"


def owner_crash(rounds: int) -> tuple[bool, str]:
    """The owner killed after round 2 resumes from its job store without re-uploading."""
    final, log = _restart_in_round_2(rounds, "owner", "completed_round", _start_owner)
    ok = (
        final["state"] == "done"
        and len(final["history"]) == rounds
        and "resuming after round" in log
        and "chunks uploaded" not in log
    )
    return ok, (
        f"owner kill -9 after round 2: resumed, {len(final['history'])} rounds, "
        f"accuracy {accuracy(final):.4f}, no re-upload: {'chunks uploaded' not in log}"
    )


def s3_restart(rounds: int) -> tuple[bool, str]:
    """The S3 server killed in round 2 and restarted on its port: the job completes."""
    final, _ = _restart_in_round_2(rounds, "s3", "round", _start_s3)
    ok = final["state"] == "done" and len(final["history"]) == rounds
    return ok, f"S3 restarted in round 2: {len(final['history'])} rounds completed"


def _errored(name: str, exc: Exception) -> tuple[bool, str]:
    return False, f"error: {type(exc).__name__}: {exc}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=None, help="run only scenarios whose name has this")
    parser.add_argument("--rounds", type=int, default=8)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, _interrupt)  # unwind, so every Run stops its processes
    rounds, honest = args.rounds, dict[str, float]()
    scenarios: list[tuple[str, Callable[[], tuple[bool, str]]]] = [
        ("byzantine/honest-baseline", lambda: baseline(rounds, honest)),
        *[(f"byzantine/{kind}", functools.partial(attacked, kind, rounds, honest))
          for kind in ("sign_flip", "noise", "label_flip", "replay")],
        ("byzantine/fedavg-degrades", lambda: naive(rounds, honest)),
        ("churn/kill-a-third", lambda: churn(rounds)),
        ("stragglers/backup", straggler),
        ("crash/owner-resumes", lambda: owner_crash(rounds)),
        ("storage/s3-restart", lambda: s3_restart(rounds)),
    ]
    results: list[bool] = []
    for name, (ok, detail), seconds in run_each(scenarios, args.only, _errored):
        print(f"{name:28s} {'PASS' if ok else 'FAIL'} {seconds:6.1f}s  {detail}", flush=True)
        results.append(ok)
    print(f"scenarios_passed={sum(results)}/{len(results)}")
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
