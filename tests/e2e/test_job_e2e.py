"""A job end to end over real processes: bootstrap, owner and trainers as separate OS
processes, a real SeaweedFS server for storage, and the one-command demo.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

from p2pnode.commands.demo import launch
from p2pnode.commands.results import write_result
from p2pnode.control import call
from p2pnode.procs import Processes
from tests.conftest import wait_for
from tests.jobspecs import DIGITS_JOB
from tests.s3servers import ServerHandle

JOB = {
    **DIGITS_JOB,
    "model": "mlp",
    "model_params": {"hidden": [64]},
    "trainers": 3,
    "rounds": 3,
    "epochs": 2,
}


def environ_of(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(item.split("=", 1) for item in raw.decode().split("\0") if "=" in item)


def test_job_over_real_processes_with_seaweedfs(
    tmp_path: Path, seaweed_server: ServerHandle
) -> None:
    cfg = seaweed_server.config
    storage = {
        "kind": "s3",
        "endpoint": cfg.endpoint,
        "bucket": cfg.bucket,
        "region": cfg.region,
        "access_key": cfg.access_key,
        "secret_key": cfg.secret_key,
    }
    procs = Processes(tmp_path)
    (tmp_path / "logs").mkdir()
    try:
        owner = launch(tmp_path, procs, storage, trainers=3, say=lambda _m: None).owner_dir
        trainer_pids = [p.pid for name, p in procs.children.items() if name.startswith("trainer")]
        assert len(trainer_pids) == 3
        for pid in trainer_pids:
            env = environ_of(pid)
            assert not {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"} & set(
                env
            )
            assert cfg.secret_key and cfg.secret_key not in "\0".join(env.values())
        job_id = call(owner, "jobs.submit", {"spec": JOB})["job_id"]

        def finished() -> dict | None:  # type: ignore[type-arg]
            procs.check_alive()
            s = call(owner, "jobs.status", {"job_id": job_id})
            return s if s["state"] not in ("preparing", "running") else None

        status = wait_for(finished, timeout=240, interval=0.5, what="the job to end")
        assert status["state"] == "done", status
        history = status["history"]
        assert [r["round"] for r in history] == [1, 2, 3]
        assert all(r["accepted"] == 3 and r["rejected"] == 0 for r in history)
        assert history[-1]["test_accuracy"] >= 0.85
        result = call(owner, "jobs.result", {"job_id": job_id})
        summary = write_result(result, tmp_path / "out")
        model = (tmp_path / "out" / "model.safetensors").read_bytes()
        assert hashlib.sha256(model).hexdigest() == result["model_sha256"]
        assert result["model_sha256"] == history[-1]["model_sha256"]
        assert summary["accuracy"] == history[-1]["test_accuracy"]
        peers = call(owner, "node.peers")
        used = set(history[-1]["trainers"])
        assert {p["peer_id"] for p in peers} >= used
        assert all(p["reputation"] > 0 for p in peers if p["peer_id"] in used), peers
        trainers_status = [call(tmp_path / f"trainer-{i}", "trainer.status") for i in range(3)]
        assert all(t["jobs"][job_id]["rounds_done"] == 3 for t in trainers_status)
    finally:
        procs.stop_all()


def test_demo_command_json_line(tmp_path: Path) -> None:
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "p2pnode.cli",
            "demo",
            "--trainers",
            "2",
            "--rounds",
            "2",
            "--dataset",
            "digits",
            "--json",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    last = json.loads(proc.stdout)  # --json: stdout holds one JSON document only
    assert last["rounds"] == 2 and last["state"] == "done"
    assert 0.8 <= last["accuracy"] <= 1.0
    assert last["seconds"] > 0
    # Each role's peak RSS (bench/demo_memory.py reads these) and each round's seconds.
    peak = last["peak_rss_mib"]
    assert {"s3", "bootstrap", "owner", "trainer-0", "trainer-1"} <= set(peak)
    # Measured (VmHWM), not a goal: bench/demo_memory.py holds the memory targets.
    assert all(5 < mib < 4096 for mib in peak.values()), peak
    assert len(last["round_seconds"]) == 2 and all(s > 0 for s in last["round_seconds"])
    model = (out / "model.safetensors").read_bytes()
    assert hashlib.sha256(model).hexdigest() == last["model_sha256"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert [r["round"] for r in metrics["rounds"]] == [1, 2]
    for rec in metrics["rounds"]:
        assert {"round", "seconds", "test_accuracy", "test_loss", "accepted", "rejected"} <= set(
            rec
        )
    assert (out / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
