"""``distro-train schema WHAT``: print the JSON Schema of a config table set or a job spec.

The schemas come from the same annotations that validate the values
(``distro_schema``), so they cannot drift from what the daemon accepts.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

from p2pnode.commands.common import JSON_HELP


def _config() -> dict[str, Any]:
    from p2pnode.config import schema

    return schema()


def _storage() -> dict[str, Any]:
    from storage.config import schema

    return schema()


def _job() -> dict[str, Any]:
    from protocols.job.spec import schema

    return schema()


SCHEMAS: dict[str, Callable[[], dict[str, Any]]] = {
    "config": _config,
    "storage": _storage,
    "job": _job,
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``WHAT``: ``config`` (the daemon's tables), ``storage`` or ``job`` (a job spec)."""
    parser.add_argument(
        "what",
        choices=list(SCHEMAS),
        help="config: the daemon's own tables; storage: the [storage] table; job: a job spec",
    )
    parser.add_argument("--json", action="store_true",
                        help=JSON_HELP + " (the schema is JSON either way)")


def run(args: argparse.Namespace) -> int:
    """Print the schema as indented JSON; exit 0."""
    print(json.dumps(SCHEMAS[args.what](), indent=2, sort_keys=True))
    return 0
