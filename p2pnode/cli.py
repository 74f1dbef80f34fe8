"""The ``distro-train`` command line.

Subcommands are registered in :data:`SUBCOMMANDS`: name -> (module, run function name,
add-arguments function name). Modules are imported only when their command runs, except
for their (cheap) argument definitions; keep heavy imports inside ``run``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from training import catalogue as cat

SUBCOMMANDS: dict[str, tuple[str, str, str, str]] = {
    # name: (module, add_arguments function, run function, help)
    "daemon": ("p2pnode.commands.daemon", "add_arguments", "run",
               "run a participant daemon"),
    "bootstrap": ("p2pnode.commands.daemon", "add_bootstrap_arguments", "run_bootstrap",
                  "run a bootstrap node (DHT server, no training)"),
    "id": ("p2pnode.commands.query", "add_arguments", "run_id",
           "show the local daemon's peer id and addresses"),
    "peers": ("p2pnode.commands.query", "add_arguments", "run_peers",
              "list live peers with their health and reputation"),
    "status": ("p2pnode.commands.jobs", "add_status_arguments", "run_status",
               "show a job's status (--watch to follow it), or the daemon's without JOB"),
    "submit": ("p2pnode.commands.jobs", "add_submit_arguments", "run_submit",
               "submit a job spec (TOML or JSON) to the local daemon; models: "
               f"{', '.join(cat.JOB_MODELS)}; datasets: {', '.join(cat.JOB_DATASETS)}; "
               f"rules: {', '.join(cat.RULES)} (distro-train schema job: every field)"),
    "jobs": ("p2pnode.commands.jobs", "add_list_arguments", "run_list",
             "list the local daemon's jobs"),
    "result": ("p2pnode.commands.jobs", "add_result_arguments", "run_result",
               "download a job's model, metrics.json and curve.png"),
    "cancel": ("p2pnode.commands.jobs", "add_cancel_arguments", "run_cancel",
               "cancel a running job"),
    "demo": ("p2pnode.commands.demo", "add_arguments", "run",
             "run the whole product on this machine: S3, bootstrap, owner, trainers"),
    "schema": ("p2pnode.commands.schema", "add_arguments", "run",
               "print the JSON Schema of the daemon config, the [storage] table or a job spec"),
}


def build_parser(prog: str = "distro-train") -> argparse.ArgumentParser:
    """Return the parser with every registered subcommand."""
    parser = argparse.ArgumentParser(
        prog=prog, description="Peer-to-peer federated training daemon and tools.")
    subs = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module, add_fn, _run_fn, help_text) in SUBCOMMANDS.items():
        sub = subs.add_parser(name, help=help_text, description=help_text)
        getattr(importlib.import_module(module), add_fn)(sub)
    return parser


def main(argv: Sequence[str] | None = None, prog: str = "distro-train") -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``), run the subcommand, return its exit code."""
    args = build_parser(prog).parse_args(argv)
    module, _add_fn, run_fn, _help = SUBCOMMANDS[args.command]
    try:
        code: int = getattr(importlib.import_module(module), run_fn)(args)
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stderr.close()
        return 141
    return code


if __name__ == "__main__":
    sys.exit(main())
