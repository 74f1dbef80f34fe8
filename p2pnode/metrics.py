"""Prometheus metrics and health checks, off by default (``[metrics] enabled = true``).

Nothing in the daemon pushes to Prometheus: a collector reads, at scrape time, the
counters each part already keeps (node, owner, trainer, job store), so metrics add
no cost to the paths they describe and cannot drift from ``node.status``.

The same listener answers two health checks, for systemd, Kubernetes or a load balancer:

- ``/healthz``: 200 while the daemon's event loop is turning (a heartbeat task ticks
  every ``metrics.heartbeat_s``; 503 once it is older than ``metrics.stale_after_s``);
- ``/readyz``: 200 once the node is serving (listening, control socket open,
  services started) and still alive, else 503.

Each answers a one-line JSON body saying why.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import choose_encoder
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


STALE_AFTER_S = 10.0
"""Default of ``metrics.stale_after_s``: ``/healthz`` fails once the heartbeat is older."""


class Health:
    """Liveness and readiness of one daemon, read by the HTTP thread.

    The event loop calls :meth:`beat` every ``metrics.heartbeat_s`` and :meth:`set_ready`
    once serving; :meth:`alive` fails once the last beat is older than ``stale_after_s``.
    """

    def __init__(self, stale_after_s: float = STALE_AFTER_S) -> None:
        self.stale_after_s = stale_after_s
        self.last_beat = time.monotonic()
        self.ready = False

    def beat(self) -> None:
        """Record that the event loop is turning."""
        self.last_beat = time.monotonic()

    def set_ready(self, ready: bool = True) -> None:
        """Mark the node as serving (or, on shutdown, as not)."""
        self.ready = ready

    def alive(self) -> tuple[bool, str]:
        """Whether the loop beat recently, and a reason."""
        age = time.monotonic() - self.last_beat
        if age > self.stale_after_s:
            return False, f"event loop silent for {age:.1f}s"
        return True, "ok"

    def readiness(self) -> tuple[bool, str]:
        """Whether the node serves, and a reason."""
        alive, why = self.alive()
        if not alive:
            return False, why
        return (True, "ok") if self.ready else (False, "starting")


class NodeCollector(Collector):
    """The node-level metrics a bootstrap node has too."""

    def __init__(self, node: Node) -> None:
        self.node = node

    def collect(self) -> Iterator[Any]:
        """Live peers."""
        peers = GaugeMetricFamily("distro_train_peers", "Live peers (presence not timed out).")
        peers.add_metric([], len(self.node.peers()))
        yield peers


def _handler(registry: CollectorRegistry, health: Health) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # http.server's naming
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
                self._send(200, content_type, encoder(registry))
            elif path in ("/healthz", "/readyz"):
                ok, why = health.alive() if path == "/healthz" else health.readiness()
                body = json.dumps({"ok": ok, "reason": why}).encode() + b"\n"
                self._send(200 if ok else 503, "application/json", body)
            else:
                self._send(404, "text/plain", b"not found: /metrics, /healthz or /readyz\n")

        def _send(self, code: int, content_type: str, body: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            """Scrapes are not logged."""

    return Handler


def serve_metrics(
    collector: Collector, health: Health, host: str, port: int
) -> ThreadingHTTPServer:
    """Serve ``/metrics``, ``/healthz`` and ``/readyz`` on ``host:port`` from a thread.

    Returns the server (``server.server_port`` is the bound port; ``shutdown()`` stops it).
    """
    registry = CollectorRegistry()
    registry.register(collector)
    server = ThreadingHTTPServer((host, port), _handler(registry, health))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return server
