"""Trainers that lie to the owner, over real processes (issue 11).

One job, five trainer daemons: a freeloader (returns the global model), a sample
liar (claims 2**64 - 1 samples), two Sybil copies sending identical bytes, and an
honest trainer. The job must end ``done`` and learn; the freeloader is refused as
``no_progress`` and charged; the liar's claim never reaches the FedAvg weights or
the job store; identical bytes from two identities are caught (issue 13: identical
bytes of two tasks, and every newcomer's task, are re-run by the owner; see
docs/verification.md).
"""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path
from typing import Any

import httpx

from p2pnode.commands.demo import launch
from p2pnode.commands.results import write_result
from p2pnode.control import call
from p2pnode.procs import Processes
from tests.conftest import wait_for
from tests.e2e.test_metrics import free_port
from tests.e2e.test_resilience import JOB, ended, storage_of
from tests.s3servers import ServerHandle

KINDS = ["freeload", "sample_liar", "copycat", "copycat", None]


def test_lying_trainers_cannot_sabotage_a_job(tmp_path: Path, nanio_server: ServerHandle) -> None:
    (tmp_path / "logs").mkdir()
    procs = Processes(tmp_path)
    programs = [
        ["-m", "tests.job.adversary_daemon", k] if k else ["-m", "p2pnode.cli", "daemon"]
        for k in KINDS
    ]
    port = free_port()
    try:
        cluster = launch(
            tmp_path, procs, storage_of(nanio_server), len(KINDS), say=lambda _m: None,
            trainer_programs=programs, owner_toml=f"[metrics]\nenabled = true\nport = {port}\n",
        )
        owner = cluster.owner_dir
        peers = {
            i: call(tmp_path / f"trainer-{i}", "node.id")["peer_id"] for i in range(len(KINDS))
        }
        spec = {**JOB, "trainers": len(KINDS), "rounds": 3, "quorum": 0}
        job_id = call(owner, "jobs.submit", {"spec": spec})["job_id"]
        final: dict[str, Any] = wait_for(
            lambda: ended(owner, job_id, procs), timeout=240, what="the job's end"
        )
        assert final["state"] == "done", final
        assert final["history"][-1]["test_accuracy"] > 0.8, final["history"][-1]
        freeloader, liar = peers[0], peers[1]
        reasons = [r for rec in final["history"] for r in rec["rejected_reasons"].values()]
        assert "no_progress" in reasons, final["history"]
        assert set(reasons) <= {"no_progress", "cheated"}, final["history"]
        assert all(freeloader not in rec["trainers"] for rec in final["history"])
        assert final["rejected"] >= len(final["history"]), "rejections reach status"
        reps = {p["peer_id"]: p.get("reputation", 0.0) for p in call(owner, "node.peers")}
        assert reps[freeloader] < 0, reps
        rows = _updates(owner / "jobs.sqlite3", job_id)
        liar_rows = [r for r in rows if r[1] == liar]
        assert liar_rows and all(0 < r[3] < 10_000 for r in liar_rows), liar_rows
        slots = {r[2]: r[3] for r in rows}
        assert all(r[3] == slots[r[2]] for r in rows), "weights are the owner's chunk counts"
        copies = [r for r in rows if r[1] in (peers[2], peers[3])]
        by_round: dict[int, set[str]] = {}
        for r in copies:
            by_round.setdefault(r[0], set()).add(r[4])
        assert any(len(s) == 1 for s in by_round.values()), "the copies' bytes were identical"
        # Every rejection is counted where it is reported: Prometheus and metrics.json.
        refused = final["rejected"]  # rows; reasons (by sha256) merge identical copies
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        labels = ('verdict="rejected"', 'reason="no_progress"')
        no_progress = reasons.count("no_progress")
        assert _counter(text, "distro_train_updates_total", *labels) >= no_progress, text
        assert _counter(text, "distro_train_rounds_total") == len(final["history"])
        write_result(call(owner, "jobs.result", {"job_id": job_id}), tmp_path / "out")
        doc = json.loads((tmp_path / "out" / "metrics.json").read_text())
        assert sum(r["rejected"] for r in doc["rounds"]) == refused
    finally:
        procs.stop_all()


def _updates(db: Path, job_id: str) -> list[tuple[int, str, int, int, str, str]]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return con.execute(
            "SELECT round, peer, slot, samples, sha256, verdict FROM updates WHERE job_id = ?",
            (job_id,),
        ).fetchall()
    finally:
        con.close()


def _counter(text: str, *needles: str) -> float:
    """The value of the first Prometheus sample line containing every one of ``needles``."""
    for line in text.splitlines():
        if all(n in line for n in needles) and not line.startswith("#"):
            return float(re.split(r"\s+", line.strip())[-1])
    return 0.0
