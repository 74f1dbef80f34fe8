"""Child processes for the demo, the scenarios and the tests: one harness.

Every child runs in a session (process group) of its own, with its output in a log
file. Stopping a child reaches its whole group: SIGTERM first, SIGKILL for what is
left after :data:`STOP_TIMEOUT_S`; a run that is killed takes its children's groups
along. Waits poll a condition under a deadline and fail
early, naming the child, when one of the watched children has exited.

:class:`Processes` keeps the children of one run by name; :func:`start_embedded_s3`
runs the embedded S3 server (``python -m storage.embedded``) as one of them. The
process-group logic itself (:func:`spawn`, :func:`stop`, :func:`kill`, :func:`wait_until`)
lives in the top-level ``distro_procs.py``, which the embedded S3 server and the dev chain
use too; it is re-exported here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, TypeVar

from distro_procs import POLL_INTERVAL_S, STOP_TIMEOUT_S, kill, spawn, stop, wait_until

T = TypeVar("T")

__all__ = ["POLL_INTERVAL_S", "STOP_TIMEOUT_S", "Processes", "kill", "spawn", "start_embedded_s3",
           "stop", "wait_until"]


class Processes:
    """One run's named Python children, logging to ``work/logs/<name>.log``.

    ``stop_all`` is idempotent; a run calls it in a ``finally``.
    """

    def __init__(self, work: Path) -> None:
        self.work = work
        self.children: dict[str, subprocess.Popen[bytes]] = {}

    def log_path(self, name: str) -> Path:
        """Where child ``name`` writes its stderr (and stdout unless piped)."""
        return self.work / "logs" / f"{name}.log"

    def start(
        self, name: str, argv: list[str], env: Mapping[str, str], stdout: int | None = None
    ) -> subprocess.Popen[bytes]:
        """Start ``python argv`` as child ``name`` (see :func:`spawn`)."""
        proc = spawn([sys.executable, *argv], self.log_path(name), env=env, stdout=stdout)
        self.children[name] = proc
        return proc

    def check_alive(self) -> None:
        """Raise RuntimeError naming the first child that has exited."""
        for name, proc in self.children.items():
            if proc.poll() is not None:
                raise RuntimeError(
                    f"{name} exited with {proc.returncode}; see {self.log_path(name)}"
                )

    def wait(self, predicate: Callable[[], T | None], what: str, timeout_s: float) -> T:
        """:func:`wait_until`, giving up as soon as any child has exited."""
        return wait_until(predicate, timeout_s, what, check=self.check_alive)

    def start_bootstrap(self, data_dir: Path, env: Mapping[str, str], timeout_s: float) -> str:
        """Start child ``bootstrap``, a bootstrap node on loopback; return its multiaddr.

        Waits (at most ``timeout_s``) until the node has written ``data_dir/multiaddr``.
        """
        self.start("bootstrap", ["-m", "p2pnode.cli", "bootstrap", "--data-dir", str(data_dir),
                                 "--listen", "/ip4/127.0.0.1/tcp/0"], env)
        maddr_file = data_dir / "multiaddr"
        return self.wait(lambda: maddr_file.read_text().strip() if maddr_file.exists() else None,
                         "the bootstrap node", timeout_s)

    def kill(self, name: str) -> None:
        """SIGKILL child ``name`` and its group (a crash), then forget it."""
        proc = self.children.pop(name, None)
        if proc is not None:
            kill(proc)

    def stop_all(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """Stop every child, newest first (see :func:`stop`), and forget them."""
        stop(reversed(self.children.values()), timeout_s)
        for proc in self.children.values():
            if proc.stdout is not None:
                proc.stdout.close()
        self.children.clear()


def start_embedded_s3(
    procs: Processes, name: str, data_dir: Path, env: Mapping[str, str], port: int = 0
) -> dict[str, str]:
    """Run ``python -m storage.embedded`` as child ``name``; return its ``[storage]`` table.

    The table (kind, endpoint, bucket, region, access and secret key) is what an owner
    daemon's config needs. ``port`` reuses a previous run's port (0: a free one), so
    presigned URLs made before a restart stay valid.

    Raises:
        RuntimeError: The server exited before it printed its address.
    """
    argv = ["-m", "storage.embedded", "--data-dir", str(data_dir)]
    proc = procs.start(name, [*argv, "--port", str(port)] if port else argv, env,
                       stdout=subprocess.PIPE)
    stdout: IO[bytes] | None = proc.stdout
    line = stdout.readline() if stdout is not None else b""
    if not line:
        procs.check_alive()
        raise RuntimeError("embedded S3 server printed nothing")
    info = json.loads(line)
    credentials = json.loads(Path(info["credentials_file"]).read_text())
    return {
        # "embedded": nanio takes presigned PUTs only (no POST policy uploads).
        "kind": "embedded",
        "endpoint": info["endpoint"],
        "bucket": info["bucket"],
        "region": info["region"],
        **credentials,
    }
