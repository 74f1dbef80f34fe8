"""``daemon`` and ``bootstrap``: run a node in the foreground until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse

from p2pnode.commands.common import (
    EXIT_USAGE,
    add_config,
    add_data_dir,
    add_logging,
    fail,
    log_level_of,
)

BOOTSTRAP_DESCRIPTION = """\
Run a bootstrap node: a well-known entry point of the network. It runs the Kademlia
DHT in server mode and relays gossip; it trains nothing and publishes no presence.
On start it prints its full multiaddr (ending in /p2p/<peer id>) on stdout and writes
it atomically to DATA_DIR/multiaddr; give that address to daemons with --bootstrap or
BOOTSTRAP_ADDR. Its defaults differ from a daemon's so both run on one host: data dir
~/.distro-train/bootstrap (inside $DISTRO_TRAIN_HOME when set), TCP port 4412. It logs
one line per peer joined or left. Stop it with Ctrl-C or SIGTERM.
"""


def add_node_arguments(parser: argparse.ArgumentParser, *, bootstrap_flag: bool) -> None:
    """Flags shared by ``daemon`` and ``bootstrap``."""
    add_data_dir(parser)
    add_config(parser)
    port = "4412" if not bootstrap_flag else "4411"
    parser.add_argument("--listen", action="append", default=None, metavar="MADDR",
                        help=f"listen multiaddr, repeatable (default /ip4/0.0.0.0/tcp/{port})")
    parser.add_argument("--announce", action="append", default=None, metavar="MADDR",
                        help="multiaddr advertised to peers instead of the listen ones, "
                             "repeatable (default: listen addresses, 0.0.0.0 replaced by "
                             "this machine's interface addresses)")
    if bootstrap_flag:
        parser.add_argument("--bootstrap", action="append", default=None, metavar="MADDR",
                            help="bootstrap multiaddr with /p2p/<id>, repeatable "
                                 "(default: $BOOTSTRAP_ADDR, comma-separated)")
    add_logging(parser)


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
    from p2pnode.commands.nodeconfig import load_for
    from p2pnode.errors import ConfigError, NodeError
    from p2pnode.logs import LogLevelError, parse_levels
    from p2pnode.runner import run_node

    level = log_level_of(args)
    try:
        parse_levels(level)
        config, _path = load_for(args, role)
    except (NodeError, LogLevelError) as exc:
        return fail(str(exc), EXIT_USAGE)
    try:
        return run_node(config, role=role, log_level=level, log_format=args.log_format)
    except ConfigError as exc:  # found on start: a socket path too long, a bad address
        return fail(str(exc), EXIT_USAGE)
    except NodeError as exc:
        return fail(str(exc))
