"""Prometheus metrics, off by default (``[metrics] enabled = true`` turns them on).

Nothing in the daemon pushes to Prometheus: a collector reads, at scrape time, the
counters each part already keeps (node, owner, trainer, job store), so metrics add
no cost to the paths they describe and cannot drift from ``node.status``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from protocols.job.selection import decayed

if TYPE_CHECKING:
    from p2pnode.node import Node
    from protocols.job.owner import Owner
    from protocols.job.trainer import Trainer

REPUTATION_BUCKETS = (-80.0, -40.0, -20.0, 0.0, 20.0, 40.0, 80.0)


class DaemonCollector(Collector):
    """Exposes one daemon's counters as ``distro_train_*`` metrics."""

    def __init__(self, node: Node, owner: Owner, trainer: Trainer) -> None:
        self.node, self.owner, self.trainer = node, owner, trainer

    def collect(self) -> Iterator[Any]:
        """Build every metric family from the current counters."""
        node, owner, trainer = self.node, self.owner, self.trainer
        peers = GaugeMetricFamily("distro_train_peers", "Live peers (presence not timed out).")
        peers.add_metric([], len(node.peers()))
        yield peers
        dropped = CounterMetricFamily(
            "distro_train_messages_dropped",
            "Messages refused, by role and reason.",
            labels=["role", "reason"],
        )
        dropped.add_metric(["node", "subscription_queue"], node.dropped_messages)
        for reason, n in owner.stats.dropped.items():
            dropped.add_metric(["owner", reason], n)
        for reason, n in trainer.dropped.items():
            dropped.add_metric(["trainer", reason], n)
        yield dropped
        transferred = CounterMetricFamily(
            "distro_train_bytes",
            "Bytes moved through object storage, by direction.",
            labels=["direction"],
        )
        transferred.add_metric(["in"], owner.stats.bytes_in + trainer.bytes_in)
        transferred.add_metric(["out"], trainer.bytes_out)
        yield transferred
        rounds = CounterMetricFamily("distro_train_rounds", "Rounds completed as owner.")
        rounds.add_metric([], owner.stats.rounds_completed)
        yield rounds
        updates = CounterMetricFamily(
            "distro_train_updates",
            "Updates seen as owner, by verdict and reason.",
            labels=["verdict", "reason"],
        )
        for (verdict, reason), n in owner.stats.updates.items():
            updates.add_metric([verdict, reason], n)
        yield updates
        tasks = CounterMetricFamily(
            "distro_train_trainer_tasks",
            "Training tasks as trainer, by outcome.",
            labels=["outcome"],
        )
        for outcome, n in trainer.tasks.items():
            tasks.add_metric([outcome], n)
        yield tasks
        yield self._reputation()

    def _reputation(self) -> HistogramMetricFamily:
        now = time.time()
        cfg = self.owner.cfg.reputation
        stored = list(self.owner.reputation.scores.values())
        scores = [decayed(s, now - t / 1000, cfg) for s, t in stored]
        buckets = [(str(b), sum(1 for s in scores if s <= b)) for b in REPUTATION_BUCKETS]
        buckets.append(("+Inf", len(scores)))
        hist = HistogramMetricFamily("distro_train_reputation", "Reputation scores of known peers.")
        hist.add_metric([], buckets, sum_value=sum(scores))
        return hist


def serve_metrics(node: Node, owner: Owner, trainer: Trainer, host: str, port: int) -> int:
    """Serve ``/metrics`` on ``host:port`` from a background thread; returns the port."""
    registry = CollectorRegistry()
    registry.register(DaemonCollector(node, owner, trainer))
    server, _thread = start_http_server(port, addr=host, registry=registry)
    return int(server.server_port)
