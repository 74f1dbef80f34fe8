"""``daemon`` and ``bootstrap``: run a node in the foreground until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
from pathlib import Path

from p2pnode.commands.common import add_data_dir, fail

BOOTSTRAP_DESCRIPTION = """\
Run a bootstrap node: a well-known entry point of the network. It runs the Kademlia
DHT in server mode and relays gossip; it trains nothing and publishes no presence.
On start it prints its full multiaddr (ending in /p2p/<peer id>) on stdout and writes
it atomically to DATA_DIR/multiaddr; give that address to daemons with --bootstrap or
BOOTSTRAP_ADDR. It logs one line per peer joined or left. Stop it with Ctrl-C or
SIGTERM.
"""


def add_node_arguments(parser: argparse.ArgumentParser, *, bootstrap_flag: bool) -> None:
    """Flags shared by ``daemon`` and ``bootstrap``."""
    add_data_dir(parser)
    parser.add_argument("--config", type=Path, default=None, help="TOML config file")
    parser.add_argument("--listen", action="append", default=None, metavar="MADDR",
                        help="listen multiaddr, repeatable (default /ip4/0.0.0.0/tcp/4001)")
    if bootstrap_flag:
        parser.add_argument("--bootstrap", action="append", default=None, metavar="MADDR",
                            help="bootstrap multiaddr with /p2p/<id>, repeatable "
                                 "(default: $BOOTSTRAP_ADDR, comma-separated)")
    parser.add_argument("--log-level", default="INFO",
                        choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="default INFO")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the daemon's flags."""
    add_node_arguments(parser, bootstrap_flag=True)


def add_bootstrap_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the bootstrap node's flags (other bootstrap nodes may be set in the config)."""
    parser.description = BOOTSTRAP_DESCRIPTION
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    add_node_arguments(parser, bootstrap_flag=False)


def run(args: argparse.Namespace) -> int:
    """Run a daemon."""
    return _run(args, "daemon")


def run_bootstrap(args: argparse.Namespace) -> int:
    """Run a bootstrap node."""
    return _run(args, "bootstrap")


def _run(args: argparse.Namespace, role: str) -> int:
    from p2pnode.config import load_config
    from p2pnode.errors import NodeError
    from p2pnode.runner import run_node

    overrides = {
        "node.data_dir": args.data_dir,
        "node.listen": args.listen,
        "node.bootstrap": getattr(args, "bootstrap", None),
    }
    try:
        config = load_config(args.config, overrides=overrides)
        return run_node(config, role=role, log_level=args.log_level)
    except NodeError as exc:
        return fail(str(exc))
