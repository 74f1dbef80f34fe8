"""A real daemon process whose trainer cheats (test and benchmark use only).

    python -m tests.job.adversary_daemon KIND <distro-train daemon flags>

KIND is one of tests.job.adversaries.ADVERSARIES.
"""

from __future__ import annotations

import argparse
import sys

from p2pnode.commands.daemon import add_arguments
from p2pnode.config import load_config
from p2pnode.runner import run_node
from tests.job.adversaries import ADVERSARIES


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="adversary_daemon")
    parser.add_argument("kind", choices=sorted(ADVERSARIES))
    add_arguments(parser)
    args = parser.parse_args(argv)
    config = load_config(args.config, overrides={
        "node.data_dir": args.data_dir, "node.listen": args.listen,
        "node.bootstrap": args.bootstrap,
    })
    return run_node(config, log_level=args.log_level, trainer_cls=ADVERSARIES[args.kind])


if __name__ == "__main__":
    sys.exit(main())
