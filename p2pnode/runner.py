"""Run a node in the foreground: logging, signals, bounded shutdown.

py-libp2p effectively swallows SIGINT (a process took 16.7 s to exit after Ctrl-C), so
a signal task cancels the top nursery instead (docs/libp2p.md#sigint). If teardown still
exceeds ``timeouts.shutdown_s``, a watchdog removes the socket and ``multiaddr`` files
and ends the process, so SIGTERM always means "gone within the deadline".
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from typing import Any

import trio

from p2pnode.config import Config
from p2pnode.control import socket_path
from p2pnode.host import quiet_libp2p_logs
from p2pnode.node import Node

log = logging.getLogger("p2pnode")

EXIT_SHUTDOWN_TIMEOUT = 3


def setup_logging(level: str) -> None:
    """Log to stderr, one line per record."""
    logging.basicConfig(
        level=getattr(logging, level),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    quiet_libp2p_logs()
    # httpx logs every request URL at INFO; presigned URLs are bearer credentials.
    logging.getLogger("httpx").setLevel(logging.WARNING)


def run_node(
    config: Config, *, role: str = "daemon", log_level: str = "INFO", trainer_cls: Any = None
) -> int:
    """Run a node until SIGINT/SIGTERM; return the process exit code (0 = clean).

    ``trainer_cls`` replaces the trainer behaviour (a ``protocols.job.trainer.Trainer``
    subclass); tests use it to run adversarial trainers as real daemons.
    """
    setup_logging(log_level)
    node = Node(config, role=role)
    if role == "daemon":
        from p2pnode.jobs import install
        from protocols.job.trainer import Trainer

        install(node, trainer_cls or Trainer)
    trio.run(_serve, node)
    log.info("stopped")
    return 0


def _watchdog(config: Config) -> None:
    def expire() -> None:
        for path in (socket_path(config.node.data_dir), config.node.data_dir / "multiaddr"):
            path.unlink(missing_ok=True)
        os.write(2, b"distro-train: shutdown exceeded timeouts.shutdown_s; exiting\n")
        os._exit(EXIT_SHUTDOWN_TIMEOUT)

    timer = threading.Timer(config.timeouts.shutdown_s, expire)
    timer.daemon = True
    timer.start()


async def _serve(node: Node) -> None:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_watch_signals, nursery.cancel_scope, node.config)
        await nursery.start(node.run)
        log.info("%s ready: peer id %s", node.role, node.peer_id)
        for addr in node.addrs():
            log.info("listening on %s", addr)
        if node.role == "bootstrap":
            print(node.addrs()[0], flush=True)


async def _watch_signals(scope: trio.CancelScope, config: Config) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            log.info("%s received, shutting down", signal.Signals(signum).name)
            _watchdog(config)
            scope.cancel()
            return
