"""Multi-process test harness: a bootstrap node and N daemons on 127.0.0.1.

Each node is its own OS process with its own data dir under ``tmp_path``::

    with open_network(tmp_path, 5) as net:
        wait_for(lambda: all(len(d.rpc("node.peers")) == 4 for d in net.daemons), 60)
        net.daemons[0].rpc("debug.publish", {"topic": "t", "data": "hi"})

Nodes run with short test timeouts and ``control.debug_routes`` on (see TEST_CONFIG);
``extra_toml`` appends sections for other packages (``[storage]``, ``[job]``...).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from p2pnode import procs
from p2pnode.control import call, socket_path

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT = 90.0
"""Seconds for a node to be ready; several processes importing libp2p at once on 2
shared cores take many seconds (11 at once: 6.5-7.6 s, see docs/libp2p.md#import-time)."""
STOP_TIMEOUT = 10.0
"""Seconds a node may take to exit after SIGTERM before it is killed."""

TEST_CONFIG = """\
[timeouts]
dial_s = 3.0
request_s = 5.0
dht_lookup_s = 5.0
publish_s = 3.0
control_read_s = 5.0
shutdown_s = 3.0

[discovery]
interval_s = 1.0
max_interval_s = 8.0

[presence]
interval_s = 1.0
silence_timeout_s = 6.0
# Every second however many daemons a test starts (the default stretches the period).
max_received_per_second = 1000.0

[control]
max_request_bytes = 65536
debug_routes = true

[trainer]
# Every server in the tests is on loopback, which trainers refuse unless allowed.
allow_networks = ["127.0.0.0/8", "::1/128"]
"""


@dataclass
class NodeProc:
    """One node process."""

    data_dir: Path
    role: str
    args: list[str]
    proc: subprocess.Popen[bytes] | None = None
    peer_id: str = ""
    addrs: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    """Extra environment for the process (``BOOTSTRAP_ADDR`` is cleared unless set here)."""

    @property
    def log_path(self) -> Path:
        """The node's combined stdout/stderr."""
        return self.data_dir / f"{self.role}.log"

    @property
    def socket(self) -> Path:
        """The control socket path."""
        return socket_path(self.data_dir)

    def start(self) -> None:
        """Launch the process in its own group (returns at once; see :meth:`wait_ready`)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        env.pop("BOOTSTRAP_ADDR", None)
        env.update(self.env)
        self.proc = procs.spawn(self.args, self.log_path, env=env, cwd=REPO)

    def check_alive(self) -> None:
        """Raise AssertionError, with the log's tail, if the process has exited."""
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"{self.role} exited {self.proc.returncode}: {self.tail()}")

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        """Wait until the control socket answers ``node.id``; record peer id and addrs."""

        def ready() -> dict[str, Any] | None:
            try:
                result: dict[str, Any] = call(self.data_dir, "node.id", timeout=5)
                return result
            except Exception:
                return None

        info = procs.wait_until(
            ready, timeout, f"{self.role} at {self.data_dir} ready", check=self.check_alive
        )
        self.peer_id, self.addrs = info["peer_id"], info["addrs"]

    def rpc(self, method: str, params: dict[str, Any] | None = None, timeout: float = 10) -> Any:
        """Call a control method; raises ControlError on an error answer."""
        return call(self.data_dir, method, params, timeout=timeout)

    def rpc_raw(self, payload: bytes, timeout: float = 10) -> bytes:
        """Send raw bytes on the control socket; return everything until EOF or newline."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(os.fspath(self.socket))
            s.sendall(payload)
            data = b""
            while not data.endswith(b"\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
            return data

    def peer_ids(self) -> set[str]:
        """Peer ids this node lists as live."""
        return {p["peer_id"] for p in self.rpc("node.peers")}

    def signal(self, sig: int) -> None:
        """Send ``sig`` to the process."""
        assert self.proc is not None
        self.proc.send_signal(sig)

    def kill(self) -> None:
        """kill -9 (the whole process group), and reap."""
        if self.proc is not None:
            procs.kill(self.proc)

    def stop(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """SIGTERM, wait, kill -9 if still there; return the exit code."""
        if self.proc is None:
            return None
        return procs.stop([self.proc], timeout)[0]

    def tail(self, n: int = 2000) -> str:
        """Last ``n`` characters of the node's log."""
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""


@dataclass
class Network:
    """A bootstrap node and daemons; ``add_daemon`` starts one more."""

    root: Path
    config_path: Path
    bootstrap: NodeProc
    daemons: list[NodeProc] = field(default_factory=list)

    @property
    def bootstrap_addr(self) -> str:
        """The bootstrap node's full multiaddr, as it wrote it to its data dir."""
        return (self.bootstrap.data_dir / "multiaddr").read_text().strip()

    def daemon_proc(self, name: str, bootstrap: list[str] | None = None) -> NodeProc:
        """Return an unstarted daemon with data dir ``root/name``."""
        args = [sys.executable, "-m", "p2pnode.cli", "daemon", "--data-dir",
                str(self.root / name), "--config", str(self.config_path),
                "--listen", "/ip4/127.0.0.1/tcp/0"]
        for addr in bootstrap if bootstrap is not None else [self.bootstrap_addr]:
            args += ["--bootstrap", addr]
        return NodeProc(self.root / name, "daemon", args)

    def add_daemon(self, name: str | None = None, wait: bool = True) -> NodeProc:
        """Start one more daemon joining through the bootstrap node."""
        node = self.daemon_proc(name or f"d{len(self.daemons)}")
        node.start()
        if wait:
            node.wait_ready()
        self.daemons.append(node)
        return node

    def close(self) -> None:
        """Stop every process (SIGTERM, then kill -9 after one shared deadline)."""
        nodes = [*self.daemons, self.bootstrap]
        procs.stop([n.proc for n in nodes if n.proc is not None], STOP_TIMEOUT)


def start_bootstrap(root: Path, config_path: Path) -> NodeProc:
    """Start a bootstrap node in ``root/bootstrap`` and wait until it wrote its multiaddr."""
    data_dir = root / "bootstrap"
    args = [sys.executable, str(REPO / "bootstrap.py"), "--data-dir", str(data_dir),
            "--listen", "/ip4/127.0.0.1/tcp/0", "--config", str(config_path)]
    node = NodeProc(data_dir, "bootstrap", args)
    node.start()
    node.wait_ready()
    return node


@contextmanager
def open_network(root: Path, n: int, *, extra_toml: str = "",
                 config: str | None = None) -> Iterator[Network]:
    """Start a bootstrap node and ``n`` daemons (all ready on return); stop all on exit.

    Every node reads ``config`` (default: :data:`TEST_CONFIG`, the tests' short
    periods) followed by ``extra_toml``.
    """
    root.mkdir(parents=True, exist_ok=True)
    config_path = root / "test.toml"
    config_path.write_text((TEST_CONFIG if config is None else config) + extra_toml)
    net = Network(root, config_path, start_bootstrap(root, config_path))
    try:
        for i in range(n):
            net.add_daemon(f"d{i}", wait=False)
        for d in net.daemons:
            d.wait_ready()
        yield net
    except BaseException:
        for node in [net.bootstrap, *net.daemons]:
            sys.stderr.write(f"--- {node.role} {node.data_dir}\n{node.tail()}\n")
        raise
    finally:
        net.close()


def json_lines(data: bytes) -> list[Any]:
    """Decode newline-separated JSON responses."""
    return [json.loads(line) for line in data.splitlines() if line.strip()]
