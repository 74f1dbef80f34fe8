"""Process lifecycle: clean signals, persistent identity, Noise only, no torch."""

from __future__ import annotations

import os
import signal
import stat
import sys
from pathlib import Path

import multiaddr
import pytest
import trio
from libp2p import new_host
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.custom_types import TProtocol
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.security.insecure.transport import PLAINTEXT_PROTOCOL_ID, InsecureTransport

from p2pnode.host import make_host
from p2pnode.identity import KEY_FILE
from tests.p2pnode.harness import TEST_CONFIG, NodeProc


def lone_daemon(tmp_path: Path, name: str = "solo") -> NodeProc:
    config = tmp_path / "test.toml"
    config.write_text(TEST_CONFIG)
    args = [sys.executable, "-m", "p2pnode.cli", "daemon", "--data-dir", str(tmp_path / name),
            "--config", str(config), "--listen", "/ip4/127.0.0.1/tcp/0"]
    node = NodeProc(tmp_path / name, "daemon", args)
    node.start()
    node.wait_ready()
    return node


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_exits_cleanly_within_shutdown_s(tmp_path: Path, sig: int) -> None:
    # The daemon's own watchdog exits with EXIT_SHUTDOWN_TIMEOUT (not 0) once shutdown
    # has taken timeouts.shutdown_s, so exit code 0 is the deadline check; a wall-clock
    # bound here would time the loaded machine rather than the daemon.
    node = lone_daemon(tmp_path)
    assert node.socket.exists()
    node.signal(sig)
    assert node.proc is not None
    code = node.proc.wait(60)
    assert code == 0, node.tail()
    assert not node.socket.exists()
    left = {p.name for p in node.data_dir.iterdir()}
    assert KEY_FILE in left and "control.sock" not in left and "multiaddr" not in left
    assert not [name for name in left if name.startswith(".")], left  # no temp files
    log = node.tail(100_000)
    assert "Traceback" not in log and "shutting down" in log


def test_restart_keeps_peer_id_and_key_is_private(tmp_path: Path) -> None:
    first = lone_daemon(tmp_path)
    peer_id = first.peer_id
    assert first.stop() == 0
    key = first.data_dir / KEY_FILE
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    second = lone_daemon(tmp_path)
    try:
        assert second.peer_id == peer_id
    finally:
        second.stop()


def test_bootstrap_writes_its_multiaddr_and_removes_it(tmp_path: Path) -> None:
    from tests.p2pnode.harness import start_bootstrap

    config = tmp_path / "test.toml"
    config.write_text(TEST_CONFIG)
    node = start_bootstrap(tmp_path, config)
    addr = (node.data_dir / "multiaddr").read_text().strip()
    assert addr == node.addrs[0] and addr.endswith("/p2p/" + node.peer_id)
    assert node.stop() == 0
    assert not (node.data_dir / "multiaddr").exists()
    assert addr in node.tail()  # printed on stdout too


async def test_plaintext_dialer_refused_noise_dialer_accepted(tmp_path: Path) -> None:
    node = lone_daemon(tmp_path)
    try:
        info = info_from_p2p_addr(multiaddr.Multiaddr(node.addrs[0]))
        listen = [multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]
        pair = create_new_key_pair()
        plain = new_host(key_pair=pair, listen_addrs=listen, sec_opt={
            TProtocol(PLAINTEXT_PROTOCOL_ID): InsecureTransport(pair)})
        async with plain.run(listen_addrs=listen):
            with pytest.raises(Exception), trio.fail_after(15):  # noqa: B017 - any dial failure
                await plain.connect(info)
        noise = make_host(create_new_key_pair(), ["/ip4/127.0.0.1/tcp/0"])
        async with noise.run(listen_addrs=listen):
            with trio.fail_after(15):
                await noise.connect(info)
            assert info.peer_id in noise.get_connected_peers()
    finally:
        node.stop()


def test_daemon_import_does_not_pull_torch() -> None:
    import subprocess

    code = ("import sys, p2pnode.cli, p2pnode.node, p2pnode.runner, protocols.presence.sampler;"
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True)
    assert out.stdout.strip() == "False"


async def test_malformed_protocol_messages_do_not_kill_the_daemon(tmp_path: Path) -> None:
    """py-libp2p lets a pubsub DecodeError end the whole host; p2pnode/host.py guards it."""
    node = lone_daemon(tmp_path)
    try:
        info = info_from_p2p_addr(multiaddr.Multiaddr(node.addrs[0]))
        attacker = make_host(create_new_key_pair(), ["/ip4/127.0.0.1/tcp/0"])
        listen = [multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]
        blobs = [b"\x05hello", b"\xff\xff\xff\xff\x0f" + os.urandom(100),
                 b"\x10" + os.urandom(16)]
        async with attacker.run(listen_addrs=listen):
            with trio.fail_after(15):
                await attacker.connect(info)
            for proto in ("/meshsub/1.1.0", "/ipfs/kad/1.0.0", "/ipfs/id/1.0.0"):
                for blob in blobs:
                    with trio.fail_after(15):
                        stream = await attacker.new_stream(info.peer_id, [TProtocol(proto)])
                        await stream.write(blob)
                        await stream.close()
        assert node.proc is not None and node.proc.poll() is None, node.tail()
        assert node.rpc("node.id")["peer_id"] == node.peer_id
    finally:
        node.stop()
