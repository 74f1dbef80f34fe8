"""Pure unit tests of p2pnode/nat.py's bookkeeping (the network side runs in tests/netns)."""

from __future__ import annotations

from p2pnode.nat import tcp_ports


def test_tcp_ports_skips_circuits_and_repeats() -> None:
    addrs = ["/ip4/10.0.0.1/tcp/4411", "/ip4/10.0.0.2/tcp/4411",
             "/ip4/1.2.3.4/tcp/9/p2p/x/p2p-circuit",
             "/ip4/10.0.0.1/tcp/abc", "/ip4/10.0.0.1/udp/5000/quic", "/ip4/10.0.0.1/tcp/4412"]
    assert tcp_ports(addrs) == [4411, 4412]
