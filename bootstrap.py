#!/usr/bin/env python3
"""Run a distro-train bootstrap node: ``python bootstrap.py --data-dir D --listen MADDR``.

Same as ``distro-train bootstrap``. Prints the node's full multiaddr (with
``/p2p/<peer id>``) on stdout and writes it atomically to ``D/multiaddr``.
"""

from __future__ import annotations

import argparse
import sys

from p2pnode.commands.daemon import BOOTSTRAP_DESCRIPTION, add_bootstrap_arguments, run_bootstrap


def main() -> int:
    """Parse the command line and run the bootstrap node until SIGINT/SIGTERM."""
    parser = argparse.ArgumentParser(prog="bootstrap.py", description=BOOTSTRAP_DESCRIPTION)
    add_bootstrap_arguments(parser)
    return run_bootstrap(parser.parse_args())


if __name__ == "__main__":
    sys.exit(main())
