"""Presence traffic stays bounded per daemon as the network grows (pure: no network)."""

from __future__ import annotations

import time
from pathlib import Path

from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.peer.id import ID

from p2pnode.config import Config
from p2pnode.node import Node
from protocols.pb import distro_pb2 as pb


def grow(node: Node, n: int) -> None:
    for _ in range(n):
        node.peer_table.observe(ID.from_pubkey(create_new_key_pair().public_key),
                                pb.Presence(), time.monotonic())


def test_presence_period_stretches_with_the_network_and_the_silence_timeout_with_it(
    tmp_path: Path,
) -> None:
    cfg = Config()
    cfg.node.data_dir = tmp_path
    node = Node(cfg.validate())
    p = cfg.presence
    assert node.presence.period() == p.interval_s
    small = int(p.interval_s * p.max_received_per_second) - 2
    grow(node, small)
    assert node.presence.period() == p.interval_s  # small / rate is under interval_s
    grow(node, 99 - small)
    period = node.presence.period()
    assert period == 100 / p.max_received_per_second
    # Every daemon receives N / period messages a second: bounded whatever N.
    assert 100 / period <= p.max_received_per_second
    assert node.peer_table.silence_timeout_s == p.silence_timeout_s * period / p.interval_s
    assert node.status()["presence_interval_s"] == period
