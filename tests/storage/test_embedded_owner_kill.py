"""The owner's embedded S3 server dies with its daemon, even a SIGKILLed one.

A real ``distro-train daemon`` with no ``[storage]`` opens its store when a job is
submitted: it starts nanio from a trio worker thread (distro_procs.spawn). SIGKILL
gives the daemon no chance to stop it; the server's lifeline watcher must.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
from pathlib import Path

from tests.conftest import wait_for
from tests.p2pnode.harness import TEST_CONFIG, NodeProc
from tests.test_distro_procs import alive

# Never reaches a round: with no trainer on the network the owner waits to recruit.
JOB = {"model": "logreg", "dataset": "digits", "trainers": 1, "rounds": 1, "epochs": 1,
       "batch_size": 16, "lr": 0.1, "rule": "fedavg", "seed": 0, "partition": "iid"}
#: Deadline for the daemon to start the server after the submit (a loaded machine).
SERVER_TIMEOUT_S = 60.0
#: Deadline for the server and its port to go once the daemon is killed.
GONE_TIMEOUT_S = 20.0


def embedded_server(data_dir: Path) -> tuple[int, int] | None:
    """``(pid, port)`` of the nanio serving ``data_dir/s3``, if one runs."""
    objects = str(data_dir / "s3" / "objects").encode()
    for entry in Path("/proc").iterdir():
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"nanio" in argv and objects in argv and b"--port" in argv:
            return int(entry.name), int(argv[argv.index(b"--port") + 1])
    return None


def group(pgid: int) -> list[int]:
    """The live processes of process group ``pgid`` (the server and its watcher)."""
    members = []
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text().rsplit(") ", 1)[1].split()
        except OSError:
            continue
        if stat[2] == str(pgid) and stat[0] != "Z":
            members.append(int(entry.name))
    return members


def listening(port: int) -> bool:
    """Whether a server holds ``port`` on loopback (binding it as a server would fails)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def test_the_embedded_server_dies_with_a_sigkilled_owner(tmp_path: Path) -> None:
    config = tmp_path / "test.toml"
    config.write_text(TEST_CONFIG)
    owner = NodeProc(tmp_path / "owner", "daemon", [
        sys.executable, "-m", "p2pnode.cli", "daemon", "--data-dir", str(tmp_path / "owner"),
        "--config", str(config), "--listen", "/ip4/127.0.0.1/tcp/0"])
    owner.start()
    server: tuple[int, int] | None = None
    try:
        owner.wait_ready()
        owner.rpc("jobs.submit", {"spec": JOB})
        server = wait_for(lambda: embedded_server(owner.data_dir), SERVER_TIMEOUT_S,
                          what="the owner's embedded S3 server")
        assert server is not None
        pid, port = server
        wait_for(lambda: listening(port), SERVER_TIMEOUT_S, what="the server to listen")
        assert owner.proc is not None
        os.kill(owner.proc.pid, signal.SIGKILL)  # the daemon alone, as the OOM killer does
        assert owner.proc.wait(GONE_TIMEOUT_S) == -signal.SIGKILL
        wait_for(lambda: not group(pid) and not listening(port), GONE_TIMEOUT_S,
                 what="the server's process group to die and its port to be free")
    except BaseException:
        sys.stderr.write(owner.tail(4000))
        raise
    finally:
        owner.kill()
        if server is not None and alive(server[0]) and embedded_server(owner.data_dir):
            os.killpg(server[0], signal.SIGKILL)  # only after a failure: do not leak it
