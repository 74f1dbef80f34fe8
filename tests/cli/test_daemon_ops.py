"""A real daemon as an operator runs it: init, then start under a (fake) systemd.

One daemon process covers: ``init`` then start with the data dir's config.toml read
without ``--config``; READY=1 sent on ``$NOTIFY_SOCKET`` only once the control socket
answers, STOPPING=1 on SIGTERM; ``/healthz`` and ``/readyz``; ``--log-format json``
lines; exit code 5 for a refused request; and a daemon without torch (hidden by a
``sitecustomize`` import blocker) advertising that it cannot train and refusing
a submitted job. A second test
runs a bootstrap node and a daemon on one host with default ports and data dirs.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
import pytest

from p2pnode.cli import main
from p2pnode.commands.common import EXIT_REFUSED
from p2pnode.control import call
from p2pnode.procs import Processes
from tests.conftest import wait_for
from tests.e2e.helpers import answers

REPO = Path(__file__).resolve().parents[2]
START_S = 60.0
NO_TORCH = """\
import importlib.abc, sys

class _NoTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, _NoTorch())
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def base_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AWS_", "DISTRO_TRAIN_", "BOOTSTRAP_ADDR", "NOTIFY_SOCKET"))}
    env["HOME"] = str(tmp_path / "home")
    env["PYTHONPATH"] = str(REPO)
    return env


def receive(sock: socket.socket, want: str, timeout: float) -> str:
    sock.settimeout(timeout)
    while True:
        message = sock.recv(4096).decode()
        if want in message.splitlines():
            return message


def test_init_then_start_under_systemd_without_torch(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    env = base_env(tmp_path)
    assert main(["init", "--data-dir", str(data)]) == 0
    port = free_port()
    with (data / "config.toml").open("a") as f:  # the operator's edit: turn metrics on
        f.write(f"\n[metrics]\nenabled = true\nport = {port}\n")
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(NO_TORCH)
    env["PYTHONPATH"] = f"{shim}{os.pathsep}{REPO}"
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify.sock"))
    env["NOTIFY_SOCKET"] = str(tmp_path / "notify.sock")
    (tmp_path / "logs").mkdir()
    procs = Processes(tmp_path)
    try:
        proc = procs.start("daemon", ["-m", "p2pnode.cli", "--log-format", "json", "daemon",
                                      "--data-dir", str(data), "--listen",
                                      "/ip4/127.0.0.1/tcp/0"], env)
        ready = receive(notify, "READY=1", START_S)
        assert answers(data), "READY=1 came before the control socket answered"
        assert f"MAINPID={proc.pid}" in ready
        for path in ("/healthz", "/readyz"):  # config.toml was read without --config
            assert httpx.get(f"http://127.0.0.1:{port}{path}", timeout=5).status_code == 200
        trainer = call(data, "trainer.status", {})
        assert trainer["can_train"] is False
        status = call(data, "node.status", {})
        assert status["presence"]["accepting"] is False and status["torch_imported"] is False
        assert main(["status", "0123abcd", "--data-dir", str(data)]) == EXIT_REFUSED
        capsys.readouterr()
        main(["doctor", "--json", "--data-dir", str(data)])  # asks the running daemon
        checks = {c["name"]: c for c in json.loads(capsys.readouterr().out)}
        assert checks["ports"]["detail"] == "in use by this data dir's running daemon"
        assert checks["reachability"]["detail"].startswith("not determined yet")
        spec = tmp_path / "job.json"
        spec.write_text('{"model": "logreg", "dataset": "digits", "trainers": 1, "rounds": 1}')
        assert main(["submit", str(spec), "--data-dir", str(data)]) == EXIT_REFUSED
        assert call(data, "jobs.list", {}) == []  # refused, not accepted to fail later
        proc.send_signal(signal.SIGTERM)
        receive(notify, "STOPPING=1", 10)
        assert proc.wait(timeout=15) == 0
    finally:
        procs.stop_all()
        notify.close()
    lines = (tmp_path / "logs" / "daemon.log").read_text().splitlines()
    records = [json.loads(line) for line in lines if line.strip()]
    assert records and all({"ts", "level", "component", "event", "fields"} <= set(r)
                           for r in records)
    events = [r["event"] for r in records]
    assert any("cannot train" in e for e in events)
    assert any(e.startswith("daemon ready: peer id") for e in events)


def test_bootstrap_and_daemon_share_a_host_with_defaults(tmp_path: Path) -> None:
    """No --listen, no --data-dir: the defaults must not collide (nor use kubo's 4001)."""
    short = Path(tempfile.mkdtemp(prefix="dt-"))  # control socket paths are <= 107 bytes
    env = {**base_env(tmp_path), "HOME": str(short)}
    (tmp_path / "logs").mkdir()
    procs = Processes(tmp_path)
    home = short / ".distro-train"
    try:
        boot = procs.start("bootstrap", ["-m", "p2pnode.cli", "bootstrap"], env,
                           stdout=subprocess.PIPE)
        assert boot.stdout is not None
        addr = boot.stdout.readline().decode().strip()
        assert "/tcp/4412/p2p/" in addr, addr
        assert (home / "bootstrap" / "multiaddr").read_text().strip() == addr
        procs.start("daemon", ["-m", "p2pnode.cli", "daemon"], {**env, "BOOTSTRAP_ADDR": addr})
        procs.wait(lambda: answers(home), "the daemon", START_S)
        status = call(home, "node.status", {})
        assert any("/tcp/4411/" in a for a in status["addrs"])
        assert "4001" not in " ".join(status["addrs"])
        wait_for(lambda: call(home, "node.status", {})["connected"] >= 1, 30,
                 what="the daemon connected to the bootstrap node")
    finally:
        procs.stop_all()
        shutil.rmtree(short, ignore_errors=True)


@pytest.mark.skipif(sys.platform != "linux", reason="NOTIFY_SOCKET is Linux/systemd")
def test_sd_notify_abstract_socket_and_absent() -> None:
    from p2pnode.runner import sd_notify

    assert sd_notify("READY=1", env={}) is False
    name = f"distro-train-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.bind("\0" + name)
        assert sd_notify("READY=1", env={"NOTIFY_SOCKET": "@" + name}) is True
        s.settimeout(5)
        assert s.recv(100) == b"READY=1"
    assert sd_notify("READY=1", env={"NOTIFY_SOCKET": "/nonexistent/notify"}) is False
