"""The control socket and the CLI against a real daemon process."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from p2pnode.commands.common import EXIT_UNREACHABLE
from p2pnode.errors import ControlError
from tests.conftest import wait_for
from tests.p2pnode.harness import REPO, Network, json_lines, open_network


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Network]:
    with open_network(tmp_path_factory.mktemp("ctl"), 2) as network:
        yield network


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "p2pnode.cli", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=60)


def test_socket_is_mode_0600(net: Network) -> None:
    mode = stat.S_IMODE(os.stat(net.daemons[0].socket).st_mode)
    assert mode == 0o600


def test_error_codes(net: Network) -> None:
    d = net.daemons[0]
    cases = [
        (b"{not json\n", -32700),
        (b"\xff\xfe\n", -32700),
        (b"[1, 2]\n", -32600),
        (b'{"jsonrpc": "1.0", "id": 1, "method": "node.id"}\n', -32600),
        (b'{"jsonrpc": "2.0", "id": 1}\n', -32600),
        (b'{"jsonrpc": "2.0", "id": [1], "method": "node.id"}\n', -32600),
        (b'{"jsonrpc": "2.0", "id": 1, "method": "no.such"}\n', -32601),
        (b'{"jsonrpc": "2.0", "id": 1, "method": "node.id", "params": [1]}\n', -32602),
        (b'{"jsonrpc": "2.0", "id": 1, "method": "node.id", "params": {"x": 1}}\n', -32602),
        (b'{"jsonrpc": "2.0", "id": 1, "method": "debug.publish", "params": {"topic": "t"}}\n',
         -32602),
        (b'{"jsonrpc":"2.0","id":1,"method":"debug.publish","params":{"topic":"t","data":5}}\n',
         -32602),
    ]
    for payload, code in cases:
        [resp] = json_lines(d.rpc_raw(payload))
        assert resp["error"]["code"] == code, (payload, resp)
        assert resp["jsonrpc"] == "2.0"


def test_oversized_request_refused_before_parsing(net: Network) -> None:
    d = net.daemons[0]
    big = b'{"jsonrpc": "2.0", "id": 1, "method": "node.id", "params": {"x": "' + b"a" * 70_000
    [resp] = json_lines(d.rpc_raw(big + b'"}}\n'))
    assert resp["error"]["code"] == -32600
    assert "too large" in resp["error"]["message"]
    # Without a newline at all: refused as soon as the limit is passed, not at EOF.
    [resp] = json_lines(d.rpc_raw(b"x" * 200_000))
    assert resp["error"]["code"] == -32600
    assert d.rpc("node.id")["peer_id"] == d.peer_id


def test_several_requests_per_connection_and_notifications(net: Network) -> None:
    d = net.daemons[0]
    payload = (b'{"jsonrpc": "2.0", "id": "a", "method": "node.id"}\n'
               b'{"jsonrpc": "2.0", "method": "node.id"}\n'
               b'{"jsonrpc": "2.0", "id": 7, "method": "node.status"}\n')
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(os.fspath(d.socket))
        s.sendall(payload)
        data = b""
        while data.count(b"\n") < 2:
            data += s.recv(65536)
    a, b = json_lines(data)
    assert (a["id"], b["id"]) == ("a", 7)
    assert a["result"]["peer_id"] == d.peer_id and b["result"]["role"] == "daemon"


def test_cli_json_and_tables(net: Network) -> None:
    d, other = net.daemons
    wait_for(lambda: other.peer_id in d.peer_ids(), 60, 0.2, "daemons see each other")
    out = cli("id", "--data-dir", str(d.data_dir), "--json")
    assert out.returncode == 0, out.stderr
    ident = json.loads(out.stdout)
    assert ident["peer_id"] == d.peer_id
    assert all(a.endswith("/p2p/" + d.peer_id) for a in ident["addrs"])
    out = cli("peers", "--data-dir", str(d.data_dir), "--json")
    peers = json.loads(out.stdout)
    assert [p["peer_id"] for p in peers] == [other.peer_id]
    assert 0 <= peers[0]["health"] <= 100 and peers[0]["addrs"]
    out = cli("peers", "--data-dir", str(d.data_dir))
    assert out.returncode == 0 and "live peers" in out.stdout
    out = cli("status", "--data-dir", str(d.data_dir), "--json")
    assert json.loads(out.stdout)["torch_imported"] is False


def test_cli_without_daemon_is_one_line_error(tmp_path: Path) -> None:
    for command in ("id", "peers", "status"):
        out = cli(command, "--data-dir", str(tmp_path), "--json")
        assert out.returncode == EXIT_UNREACHABLE  # documented in --help and docs/operators.md
        assert out.stdout == ""
        assert out.stderr.count("\n") == 1 and "no daemon running" in out.stderr


def test_oversized_call_gets_32600_through_the_client(net: Network) -> None:
    d = net.daemons[0]
    with pytest.raises(ControlError) as info:
        d.rpc("debug.publish", {"topic": "t", "data": "x" * 2_000_000})
    assert info.value.code == -32600
    assert d.rpc("node.id")["peer_id"] == d.peer_id


def test_garbage_on_the_libp2p_port_does_not_hurt(net: Network) -> None:
    d = net.daemons[0]
    host, port = d.addrs[0].split("/")[2], int(d.addrs[0].split("/")[4])
    for blob in (b"\x00" * 10, os.urandom(5000), b"/multistream/1.0.0\n" * 100):
        with socket.create_connection((host, port), timeout=5) as s:
            s.sendall(blob)
    half = socket.create_connection((host, port), timeout=5)
    assert d.rpc("node.id")["peer_id"] == d.peer_id
    half.close()
    assert d.proc is not None and d.proc.poll() is None


def test_join_through_env_with_one_bootstrap_down(net: Network) -> None:
    """BOOTSTRAP_ADDR lists a dead node first; the daemon still joins through the live one."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead_port = s.getsockname()[1]
    dead_id = "12D3KooWDzpVNmq32sN8YuoWTCQRPBGg764m5abgzD3NbvyRzhfC"
    dead = f"/ip4/127.0.0.1/tcp/{dead_port}/p2p/{dead_id}"
    node = net.daemon_proc("via-env", bootstrap=[])
    node.env = {"BOOTSTRAP_ADDR": f"{dead},{net.bootstrap_addr}"}
    node.start()
    try:
        node.wait_ready()
        others = {d.peer_id for d in net.daemons}
        wait_for(lambda: node.peer_ids() >= others, 60, 0.2, "joined via the live bootstrap")
        wait_for(lambda: all(node.peer_id in d.peer_ids() for d in net.daemons), 60, 0.2,
                 "the others see it")
    finally:
        node.stop()
