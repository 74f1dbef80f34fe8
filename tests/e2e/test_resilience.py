"""Crashes and churn over real processes: an owner killed mid-job resumes, a trainer
killed mid-round is replaced by a spare, no round is lost, and the trainer, restarted,
rejoins and is selected again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from p2pnode.commands.demo import Cluster, clean_env, launch
from p2pnode.control import call
from p2pnode.errors import ControlError
from p2pnode.procs import Processes
from tests.conftest import wait_for
from tests.jobspecs import DIGITS_JOB
from tests.s3servers import ServerHandle

JOB: dict[str, Any] = {**DIGITS_JOB, "model": "mlp", "model_params": {"hidden": [128]}, "rounds": 6}


def storage_of(server: ServerHandle) -> dict[str, Any]:
    c = server.config
    return {
        # The server's own kind: an embedded (nanio) server takes presigned PUTs only.
        "kind": c.kind,
        "endpoint": c.endpoint,
        "bucket": c.bucket,
        "region": c.region,
        "access_key": c.access_key,
        "secret_key": c.secret_key,
    }


def status(owner: Path, job_id: str) -> dict[str, Any] | None:
    try:
        result: dict[str, Any] = call(owner, "jobs.status", {"job_id": job_id}, timeout=5)
        return result
    except ControlError:
        return None


def ended(owner: Path, job_id: str, procs: Processes) -> dict[str, Any] | None:
    procs.check_alive()
    s = status(owner, job_id)
    return s if s and s["state"] not in ("preparing", "running") else None


def start(tmp: Path, server: ServerHandle, trainers: int) -> tuple[Processes, Cluster]:
    (tmp / "logs").mkdir()
    procs = Processes(tmp)
    return procs, launch(tmp, procs, storage_of(server), trainers, say=lambda _m: None)


def test_owner_killed_mid_job_resumes_from_its_last_round(
    tmp_path: Path, nanio_server: ServerHandle
) -> None:
    procs, cluster = start(tmp_path, nanio_server, trainers=3)
    try:
        owner = cluster.owner_dir
        job_id = call(owner, "jobs.submit", {"spec": {**JOB, "trainers": 3}})["job_id"]
        wait_for(
            lambda: (status(owner, job_id) or {}).get("completed_round", 0) >= 2,
            timeout=240,
            what="two rounds",
        )
        procs.kill("owner")
        procs.start("owner-restarted", cluster.owner_argv, clean_env())
        final = wait_for(
            lambda: ended(owner, job_id, procs),
            timeout=180,
            interval=0.5,
            what="the resumed job to end",
        )
        assert final["state"] == "done", final
        assert [r["round"] for r in final["history"]] == list(range(1, 7))
        assert final["history"][-1]["test_accuracy"] > 0.85
        log = (tmp_path / "logs" / "owner-restarted.log").read_text()
        assert "resuming after round" in log
        assert "chunks uploaded" not in log, "the restarted owner uploaded the data again"
    finally:
        procs.stop_all()


def test_trainer_killed_mid_job_is_replaced_and_no_round_is_lost(
    tmp_path: Path, nanio_server: ServerHandle
) -> None:
    procs, cluster = start(tmp_path, nanio_server, trainers=4)
    try:
        owner = cluster.owner_dir
        spec = {**JOB, "trainers": 3, "spares": 1, "round_deadline_s": 30.0}
        job_id = call(owner, "jobs.submit", {"spec": spec})["job_id"]

        def training_in_round_2() -> list[str]:
            s = status(owner, job_id) or {}
            if s.get("round", 0) < 2:
                return []
            return [p for p, st in s["trainers"].items() if st in ("assigned", "training")]

        victim = wait_for(training_in_round_2, timeout=120, what="round 2 under way")[0]
        ids = {call(tmp_path / f"trainer-{i}", "node.id")["peer_id"]: i for i in range(4)}
        procs.kill(f"trainer-{ids[victim]}")
        final = wait_for(
            lambda: ended(owner, job_id, procs), timeout=240, interval=0.5, what="the job to end"
        )
        assert final["state"] == "done", final
        history = final["history"]
        assert [r["round"] for r in history] == list(range(1, 7)), "a round was lost"
        assert all(r["accepted"] == 3 for r in history), [r["accepted"] for r in history]
        assert all(victim not in r["trainers"] for r in history[2:])
        assert final["trainers"][victim] == "gone"

        # The killed trainer restarts on its data dir: same peer id, it rejoins and the
        # owner selects it again for the next job (its reputation took the hit but
        # stays above the floor).
        procs.start("victim-restarted", cluster.trainer_argv[ids[victim]], clean_env())
        wait_for(
            lambda: victim in {p["peer_id"] for p in call(owner, "node.peers")},
            60,
            what="the restarted trainer to rejoin",
        )
        again = call(
            owner, "jobs.submit", {"spec": {**spec, "trainers": 4, "spares": 0, "rounds": 1}}
        )["job_id"]
        second = wait_for(
            lambda: ended(owner, again, procs),
            timeout=180,
            interval=0.5,
            what="the second job to end",
        )
        assert second["state"] == "done", second
        assert victim in second["history"][0]["trainers"]
    finally:
        procs.stop_all()
