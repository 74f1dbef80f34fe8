#!/usr/bin/env python3
"""Run a distro-train bootstrap node: ``python bootstrap.py --data-dir D --listen MADDR``.

Same as ``distro-train bootstrap``. Prints the node's full multiaddr (with
``/p2p/<peer id>``) on stdout and writes it atomically to ``D/multiaddr``.
"""

from __future__ import annotations

import sys

from p2pnode.cli import main

if __name__ == "__main__":
    sys.exit(main(["bootstrap", *sys.argv[1:]], prog="bootstrap.py"))
