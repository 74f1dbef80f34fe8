"""The control socket refuses other users: mode 0600, and a peer-credential check that
holds even when the socket's mode is loosened.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from p2pnode.commands.demo import clean_env
from p2pnode.control import socket_path
from p2pnode.procs import Processes
from tests.conftest import wait_for
from tests.e2e.helpers import answers

NOBODY = 65534
CLIENT = """
import os, socket, sys
os.setgid({uid}); os.setuid({uid})
s = socket.socket(socket.AF_UNIX)
s.settimeout(10)
try:
    s.connect(sys.argv[1])
except PermissionError:
    print("denied-by-mode"); sys.exit(0)
try:
    s.sendall(b'{{"jsonrpc": "2.0", "id": 1, "method": "node.id"}}\\n')
    data = s.recv(65536)
except (ConnectionResetError, BrokenPipeError):
    data = b""
print("answer:" + data.decode())
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="switching to another uid needs root")
def test_other_users_are_refused(tmp_path: Path) -> None:
    (tmp_path / "logs").mkdir()
    procs = Processes(tmp_path)
    # pytest's own temp folders are private to root; another user must reach the socket.
    public = Path(tempfile.mkdtemp(prefix="dt-users-", dir="/tmp"))
    public.chmod(0o755)
    data = public / "d"
    try:
        procs.start(
            "d",
            [
                "-m",
                "p2pnode.cli",
                "daemon",
                "--listen",
                "/ip4/127.0.0.1/tcp/0",
                "--data-dir",
                str(data),
            ],
            clean_env(),
        )
        wait_for(lambda: answers(data), 60, what="the daemon")
        sock = socket_path(data)
        assert stat.S_IMODE(sock.stat().st_mode) == 0o600
        data.chmod(0o755)

        def as_nobody() -> str:
            out = subprocess.run(
                [sys.executable, "-c", CLIENT.format(uid=NOBODY), str(sock)],
                capture_output=True,
                text=True,
                timeout=30,
            )
            return out.stdout.strip() or out.stderr.strip()[-300:]

        assert as_nobody() == "denied-by-mode"
        sock.chmod(0o666)  # someone loosens the mode: the credential check still refuses
        assert as_nobody() == "answer:"
        assert answers(data), "the owner of the daemon is still served"
    finally:
        procs.stop_all()
        shutil.rmtree(public, ignore_errors=True)
