"""Run a node in the foreground: logging, signals, readiness, health, bounded shutdown.

py-libp2p effectively swallows SIGINT (a process took 16.7 s to exit after Ctrl-C), so
a signal task cancels the top nursery instead (docs/libp2p.md#sigint). If teardown still
exceeds ``timeouts.shutdown_s``, a watchdog removes the socket and ``multiaddr`` files
and ends the process, so SIGTERM always means "gone within the deadline".

Once the node serves, the runner tells systemd (``READY=1`` on ``$NOTIFY_SOCKET``,
see :func:`sd_notify`; ``STOPPING=1`` on shutdown) and marks ``/readyz`` ready when
``[metrics]`` is enabled. A heartbeat task keeps ``/healthz`` fresh and, when systemd
set ``WatchdogSec=`` (``$WATCHDOG_USEC``), sends ``WATCHDOG=1`` every
``metrics.heartbeat_s`` (1 s).
"""

from __future__ import annotations

import faulthandler
import logging
import os
import signal
import socket
import threading
from typing import Any

import trio

from p2pnode.allocator import return_freed_memory
from p2pnode.config import Config
from p2pnode.control import socket_path
from p2pnode.errors import NodeError
from p2pnode.logs import setup_logging
from p2pnode.metrics import Health
from p2pnode.node import Node
from protocols.job.jobmemory import freeze_after_warm_up

log = logging.getLogger("p2pnode")

EXIT_SHUTDOWN_TIMEOUT = 3


def sd_notify(message: str, env: dict[str, str] | None = None) -> bool:
    """Send ``message`` to systemd's ``$NOTIFY_SOCKET``; False when not under systemd.

    The socket is a Unix datagram socket; a name starting with ``@`` is in the
    abstract namespace. Errors are logged, never raised: a missing notification
    must not stop a daemon that otherwise works.
    """
    path = (os.environ if env is None else env).get("NOTIFY_SOCKET", "")
    if not path:
        return False
    address = "\0" + path[1:] if path.startswith("@") else path
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.connect(address)
            s.sendall(message.encode())
    except OSError as exc:
        log.warning("cannot notify systemd on %s: %s", path, exc)
        return False
    return True


def run_node(
    config: Config,
    *,
    role: str = "daemon",
    log_level: str | None = "INFO",
    log_format: str = "text",
    trainer_cls: Any = None,
) -> int:
    """Run a node until SIGINT/SIGTERM; return the process exit code (0 = clean).

    ``trainer_cls`` replaces the trainer behaviour (a ``protocols.job.trainer.Trainer``
    subclass); tests use it to run adversarial trainers as real daemons. Without torch
    installed, the daemon runs :class:`p2pnode.notrain.NoTrainTrainer`.
    """
    setup_logging(log_level or os.environ.get("DISTRO_TRAIN_LOG_LEVEL") or "INFO", log_format)
    faulthandler.enable()  # a native crash (SIGSEGV, SIGABRT) leaves its stacks in the log
    return_freed_memory()  # a daemon runs for days: freed buffers go back (p2pnode/allocator.py)
    freeze_after_warm_up()  # its own process: torch's objects leave the collector's sight
    node = Node(config, role=role)
    health = Health(config.metrics.stale_after_s)
    collector = _install_roles(node, trainer_cls)
    server = None
    if collector is not None:
        from p2pnode.metrics import serve_metrics

        m = config.metrics
        server = serve_metrics(collector, health, m.host, m.port)
        log.info("metrics at http://%s:%d/metrics (and /healthz, /readyz)",
                 m.host, server.server_port)
    try:
        trio.run(_serve, node, health)
    except BaseExceptionGroup as group:
        # A deliberate error (a socket path too long, a port taken) surfaces wrapped by
        # the nurseries it crossed; report it, not the nursery traceback.
        mine, _rest = group.split(NodeError)
        if mine is None:
            raise
        raise _first(mine) from None
    finally:
        if server is not None:
            server.shutdown()
    log.info("stopped")
    return 0


def _install_roles(node: Node, trainer_cls: Any) -> Any:
    """A daemon's owner and trainer roles (bootstrap nodes have none); its metrics collector.

    Returns None when ``[metrics]`` is off.
    """
    config = node.config
    collector: Any = None
    if node.role == "daemon":
        from p2pnode.jobs import install
        from p2pnode.notrain import (
            INSTALL_HINT,
            OWNER_HINT,
            NoTrainTrainer,
            can_train,
            missing_for_owner,
            refuse_jobs_without,
        )
        from protocols.job.trainer import Trainer

        if trainer_cls is None and not can_train():
            log.warning("torch is not installed: this daemon cannot train and refuses every "
                        "job (%s)", INSTALL_HINT)
            trainer_cls = NoTrainTrainer
        owner, trainer = install(node, trainer_cls or Trainer)
        missing = missing_for_owner()
        if missing:
            log.warning("%s not installed: this daemon refuses jobs submitted to it (%s)",
                        ", ".join(missing), OWNER_HINT)
            node.routes.wrap("jobs.submit", refuse_jobs_without(missing))
        if config.metrics.enabled:
            from p2pnode.metrics import DaemonCollector

            collector = DaemonCollector(node, owner, trainer)
    elif config.metrics.enabled:
        from p2pnode.metrics import NodeCollector

        collector = NodeCollector(node)
    return collector


def _first(group: BaseExceptionGroup[NodeError]) -> NodeError:
    first = group.exceptions[0]
    return _first(first) if isinstance(first, BaseExceptionGroup) else first


def _watchdog(config: Config) -> None:
    def expire() -> None:
        for path in (socket_path(config.node.data_dir), config.node.data_dir / "multiaddr"):
            path.unlink(missing_ok=True)
        os.write(2, b"distro-train: shutdown exceeded timeouts.shutdown_s; exiting\n")
        os._exit(EXIT_SHUTDOWN_TIMEOUT)

    timer = threading.Timer(config.timeouts.shutdown_s, expire)
    timer.daemon = True
    timer.start()


async def _serve(node: Node, health: Health) -> None:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_watch_signals, nursery.cancel_scope, node.config, health)
        nursery.start_soon(_heartbeat, health, node.config.metrics.heartbeat_s)
        await nursery.start(node.run)
        log.info("%s ready: peer id %s", node.role, node.peer_id)
        for addr in node.addrs():
            log.info("listening on %s", addr)
        if node.role == "bootstrap":
            print(node.addrs()[0], flush=True)
        health.set_ready()
        sd_notify(f"READY=1\nSTATUS={node.role} serving as {node.peer_id}\nMAINPID={os.getpid()}")


async def _heartbeat(health: Health, interval_s: float) -> None:
    """Tick ``/healthz`` every ``interval_s``; ping systemd's watchdog when it asks for pings."""
    watchdog = bool(os.environ.get("WATCHDOG_USEC")) and os.environ.get(
        "WATCHDOG_PID", str(os.getpid())) == str(os.getpid())
    while True:
        health.beat()
        if watchdog and health.ready:
            sd_notify("WATCHDOG=1")
        await trio.sleep(interval_s)


async def _watch_signals(scope: trio.CancelScope, config: Config, health: Health) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            log.info("%s received, shutting down", signal.Signals(signum).name)
            health.set_ready(False)
            sd_notify("STOPPING=1")
            _watchdog(config)
            scope.cancel()
            return
