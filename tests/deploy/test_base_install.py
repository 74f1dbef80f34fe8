"""A base install (no ``train`` extra, so no torch) runs a daemon that refuses jobs cleanly.

Builds a fresh virtual environment with ``pip install <repo>`` (no extras; versions
constrained by requirements.lock), starts its ``distro-train daemon`` next to a
bootstrap node and an owner from the development environment, and submits a job:
the base daemon must stay up, advertise ``accepting: false``, count the announcement
as ``cannot_train`` and never import torch.

Building the venv takes a minute or more, so this runs only with
``DISTRO_TRAIN_INSTALL_TESTS=1`` (``make test-install``).
"""

from __future__ import annotations

import os
import subprocess
import venv
from pathlib import Path

import pytest

from p2pnode.commands.demo import clean_env, launch
from p2pnode.control import call
from p2pnode.errors import ControlError
from p2pnode.procs import Processes, spawn, start_embedded_s3

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(
    not os.environ.get("DISTRO_TRAIN_INSTALL_TESTS"),
    reason="builds a venv (minutes): DISTRO_TRAIN_INSTALL_TESTS=1 or make test-install",
)
JOB = {"model": "logreg", "dataset": "digits", "trainers": 1, "rounds": 1, "epochs": 1,
       "batch_size": 16, "lr": 0.1, "rule": "fedavg", "seed": 0, "partition": "iid"}


def build_base_venv(where: Path) -> Path:
    venv.EnvBuilder(with_pip=True).create(where)
    python = where / "bin" / "python"
    # A non-editable install of the repo, with the base dependencies only.
    # The lock's versions as constraints (without its hashes: a local directory has none).
    pins = [line.split(" ")[0] for line in (REPO / "requirements.lock").read_text().splitlines()
            if "==" in line and not line.startswith((" ", "#"))]
    constraints = where / "constraints.txt"
    constraints.write_text("\n".join(pins) + "\n")
    subprocess.run([str(python), "-m", "pip", "install", "-q", "-c", str(constraints), str(REPO)],
                   check=True, timeout=900, cwd=where)
    return where / "bin" / "distro-train"


def try_call(data_dir: Path, method: str) -> object:
    try:
        return call(data_dir, method, {}, timeout=5)
    except ControlError:
        return None


def test_base_install_daemon_refuses_jobs_cleanly(tmp_path: Path) -> None:
    binary = build_base_venv(tmp_path / "venv")
    probe = subprocess.run([str(binary.parent / "python"), "-c", "import torch"],
                           capture_output=True, cwd=tmp_path, check=False)
    assert probe.returncode != 0, "the base install must not bring torch"
    (tmp_path / "logs").mkdir()
    procs = Processes(tmp_path)
    env = clean_env()
    try:
        storage = start_embedded_s3(procs, "s3", tmp_path / "s3", env)
        cluster = launch(tmp_path, procs, storage, trainers=0, say=lambda m: None)
        maddr = (tmp_path / "bootstrap" / "multiaddr").read_text().strip()
        base_dir = tmp_path / "base"
        base_env = {k: v for k, v in env.items() if k != "PYTHONPATH"}
        base = spawn([str(binary), "daemon", "--data-dir", str(base_dir), "--bootstrap", maddr,
                      "--listen", "/ip4/127.0.0.1/tcp/0"], procs.log_path("base"),
                     env=base_env, cwd=tmp_path)
        procs.children["base"] = base
        peers = procs.wait(lambda: try_call(cluster.owner_dir, "node.peers"),
                           "the owner to see the base daemon", 90)
        assert isinstance(peers, list) and [p["accepting"] for p in peers] == [False]
        job = call(cluster.owner_dir, "jobs.submit", {"spec": JOB})["job_id"]

        def refused() -> bool:
            status = try_call(base_dir, "trainer.status")
            return isinstance(status, dict) and status["dropped"].get("cannot_train", 0) >= 1

        procs.wait(refused, "the base daemon to refuse the announced job", 90)
        status = call(base_dir, "node.status", {})
        assert status["torch_imported"] is False and status["presence"]["accepting"] is False
        assert call(base_dir, "trainer.status", {})["can_train"] is False
        with pytest.raises(ControlError) as refused_submit:  # nor can it own one
            call(base_dir, "jobs.submit", {"spec": JOB})
        assert refused_submit.value.code == -32002
        assert "cannot own jobs" in refused_submit.value.message
        call(cluster.owner_dir, "jobs.cancel", {"job_id": job})
        procs.check_alive()  # nobody crashed, the base daemon included
    finally:
        procs.stop_all()
    log = procs.log_path("base").read_text()
    assert "cannot train" in log and "Traceback" not in log, log[-3000:]
