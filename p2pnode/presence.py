"""The node's side of the presence protocol (:mod:`protocols.presence`).

A daemon publishes its signed status on the presence topic every period, with 10%
jitter; every node keeps the table of the peers it has heard within the silence
timeout. The period grows with the network so that each daemon receives a bounded
number of presence messages a second (``presence.max_received_per_second``).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

import trio
from libp2p.crypto.keys import PrivateKey
from libp2p.peer.id import ID

from p2pnode.config import Config
from protocols.envelope import ReplayGuard
from protocols.errors import EnvelopeError
from protocols.pb import distro_pb2 as pb
from protocols.presence import TOPIC
from protocols.presence.codec import decode_presence, encode_presence
from protocols.presence.sampler import Sampler
from protocols.presence.table import PeerTable

log = logging.getLogger(__name__)


class Presence:
    """Our own status (sampled and published) and the table of live peers.

    Args:
        config: the daemon's config (``presence.*``, ``work.*``, ``timeouts.publish_s``).
        private_key: this node's key, which signs each status.
        replay: the replay guard incoming statuses are checked against.
    """

    def __init__(self, config: Config, private_key: PrivateKey, replay: ReplayGuard) -> None:
        self.config = config
        self.private_key = private_key
        self.replay = replay
        self.table = PeerTable(config.presence.silence_timeout_s)
        self.sampler = Sampler(config.work.queue_capacity, config.work.min_health_to_work)
        self.last_status: dict[str, Any] = {}
        """The figures of our latest published status (``node.status()["presence"]``)."""
        self._last: pb.Presence | None = None

    def local_status(self, addrs: list[str]) -> pb.Presence:
        """Our latest published status (sampled now, with ``addrs``, if none yet)."""
        if self._last is None:
            self._last = self.sampler.sample(addrs)
        return self._last

    def period(self) -> float:
        """The presence period for the network size seen now (``presence.*``).

        ``interval_s`` while the network is small; with N live peers every daemon
        receives N / period messages a second, so the period grows to
        N / ``max_received_per_second``. Peers are forgotten after ``silence_timeout_s``
        scaled by the same factor (every daemon sees about the same N).
        """
        cfg = self.config.presence
        period = max(cfg.interval_s, (len(self.table) + 1) / cfg.max_received_per_second)
        self.table.silence_timeout_s = cfg.silence_timeout_s * period / cfg.interval_s
        return period

    def observe(self, data: bytes, from_peer: ID) -> bool:
        """Take one presence message in; return whether it made a new peer live."""
        try:
            sender, status = decode_presence(data, from_peer, self.replay)
        except EnvelopeError as exc:
            log.debug("presence from %s refused: %s", from_peer, exc.reason)
            return False
        joined = self.table.observe(sender, status, time.monotonic())
        if joined:
            log.info("peer joined %s (%d live)", sender, len(self.table))
        return joined

    async def publish_loop(self, publish: Callable[[str, bytes], Awaitable[None]],
                           addrs: Callable[[], list[str]]) -> None:
        """Sample and publish our status every :meth:`period` until cancelled.

        ``publish`` raises ``trio.TooSlowError`` past ``timeouts.publish_s``; that
        status is skipped and the loop goes on.
        """
        while True:
            status = self.sampler.sample(addrs())
            self._last = status
            self.last_status = {"health": status.health, "accepting": status.accepting,
                                "seq": status.seq, "cpu_percent": status.cpu_percent,
                                "mem_percent": status.mem_percent}
            try:
                await publish(TOPIC, encode_presence(self.private_key, status))
            except trio.TooSlowError:
                log.warning("presence publish took over %ss", self.config.timeouts.publish_s)
            await trio.sleep(self.period() * random.uniform(0.9, 1.1))
