"""Arguments and helpers shared by subcommands."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def add_data_dir(parser: argparse.ArgumentParser) -> None:
    """Add ``--data-dir`` (default: $DISTRO_TRAIN_HOME or ~/.distro-train)."""
    parser.add_argument(
        "--data-dir", type=Path, default=None,
        help="daemon data dir (default: $DISTRO_TRAIN_HOME or ~/.distro-train)",
    )


def add_json(parser: argparse.ArgumentParser) -> None:
    """Add ``--json`` (machine-readable output on stdout)."""
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def data_dir_of(args: argparse.Namespace) -> Path:
    """Return the data dir named by ``--data-dir`` or the environment default."""
    from p2pnode.config import default_data_dir

    return Path(args.data_dir).expanduser() if args.data_dir else default_data_dir()


def fail(message: str, code: int = 1) -> int:
    """Print a one-line error to stderr and return ``code``."""
    print(f"distro-train: {message}", file=sys.stderr)
    return code


def print_json(value: Any) -> None:
    """Print ``value`` as indented JSON on stdout."""
    print(json.dumps(value, indent=2, sort_keys=True))
