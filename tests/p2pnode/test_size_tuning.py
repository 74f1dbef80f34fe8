"""Daemons stretch their presence period and gossip heartbeat with the network's size.

One small multi-process network; the budgets are set low so that six daemons already
count as "large": each must settle on the period and heartbeat its peer count calls
for, and gossip must still reach everyone at that pace.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import wait_for
from tests.p2pnode import harness
from tests.p2pnode.harness import open_network
from tests.p2pnode.test_network import publish_until_all_receive

DAEMONS = 6
SIZED = """
[gossip]
heartbeat_peers_per_s = 2.0
max_heartbeat_s = 3
"""
"""6 connections (5 daemons + bootstrap) / 2 a second: a 3 s heartbeat."""


def settled(status: dict[str, Any]) -> bool:
    """The period and heartbeat six daemons call for, once each sees the whole network."""
    return (status["connected"] == DAEMONS and status["peers"] == DAEMONS - 1
            and status["gossip"]["heartbeat_s"] == 3
            # max(interval_s 1.0, (5 peers + itself) / 2 a second)
            and status["presence_interval_s"] == 3.0)


def test_presence_and_heartbeat_follow_the_network_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = harness.TEST_CONFIG.replace("max_received_per_second = 1000.0",
                                         "max_received_per_second = 2.0")
    assert config != harness.TEST_CONFIG, "tests/p2pnode/harness.py changed its [presence]"
    monkeypatch.setattr(harness, "TEST_CONFIG", config)
    with open_network(tmp_path, DAEMONS, extra_toml=SIZED) as net:
        wait_for(lambda: all(settled(d.rpc("node.status")) for d in net.daemons), 90, 0.5,
                 "every daemon on a 3 s presence period and heartbeat")
        for d in net.daemons:
            d.rpc("debug.subscribe", {"topic": "t"})
        publish_until_all_receive(net.daemons[0], net.daemons[1:], "sized")
        status = net.daemons[-1].rpc("node.status")
        assert 1 <= status["gossip"]["mesh"]["/distro-train/debug/t"] <= 5
