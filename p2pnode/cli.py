"""The ``distro-train`` command line.

Subcommands are registered in :data:`SUBCOMMANDS`: name -> (module, add-arguments
function, run function, help). Modules are imported only when their command runs, except
for their (cheap) argument definitions; keep heavy imports inside ``run``.

Global options (:data:`GLOBAL_OPTIONS`) may come before or after the subcommand:
``distro-train --data-dir D id`` is read as ``distro-train id --data-dir D``. A global
option the subcommand does not take is a usage error (exit 2), as any unknown flag.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from p2pnode.commands.common import EXIT_BROKEN_PIPE, EXIT_CODES_HELP
from training import catalogue as cat

SUBCOMMANDS: dict[str, tuple[str, str, str, str]] = {
    # name: (module, add_arguments function, run function, help)
    "daemon": ("p2pnode.commands.daemon", "add_arguments", "run",
               "run a participant daemon"),
    "bootstrap": ("p2pnode.commands.daemon", "add_bootstrap_arguments", "run_bootstrap",
                  "run a bootstrap node (DHT server, no training)"),
    "init": ("p2pnode.commands.config", "add_init_arguments", "run_init",
             "create the data dir with a commented config.toml"),
    "config": ("p2pnode.commands.config", "add_config_arguments", "run_config",
               "config show: the effective configuration and where each value comes from"),
    "doctor": ("p2pnode.commands.doctor", "add_arguments", "run",
               "check this machine's set-up; each check gives a verdict and a fix"),
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
    "wallet": ("p2pnode.commands.market", "add_arguments", "run_wallet",
               "show this daemon's wallet address and balance on its ledger"),
    "earnings": ("p2pnode.commands.market", "add_job_arguments", "run_earnings",
                 "show receipts pending, vesting, redeemed and forfeited, per job"),
    "redeem": ("p2pnode.commands.market", "add_job_arguments", "run_redeem",
               "redeem every vested receipt on the ledger, batched"),
    "refund": ("p2pnode.commands.market", "add_refund_arguments", "run_refund",
               "owner: take back a job's unpaid budget after its end and grace period"),
    "lineage": ("p2pnode.commands.market", "add_lineage_arguments", "run_lineage",
                "show a job's model lineage from the ledger (--verify: check it all)"),
    "demo": ("p2pnode.commands.demo", "add_arguments", "run",
             "run the whole product on this machine: S3, bootstrap, owner, trainers"),
    "web": ("p2pnode.commands.web", "add_arguments", "run",
            "print the login URL of the daemon's web dashboard ([web] enabled = true)"),
    "schema": ("p2pnode.commands.schema", "add_arguments", "run",
               "print the JSON Schema of the daemon config, the [storage] table or a job spec"),
    "completion": ("p2pnode.commands.completion", "add_arguments", "run",
                   "print a bash or zsh completion script"),
}

GLOBAL_OPTIONS: dict[str, bool] = {
    # option: takes a value
    "--data-dir": True,
    "--config": True,
    "--log-level": True,
    "--log-format": True,
    "--json": False,
}
"""Options accepted before the subcommand too (each subcommand declares its own)."""


def version() -> str:
    """The installed package's version (from its metadata), or ``0+unknown``."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("distro-train")
    except PackageNotFoundError:
        return "0+unknown"


def build_parser(prog: str = "distro-train") -> argparse.ArgumentParser:
    """Return the parser with every registered subcommand."""
    parser = argparse.ArgumentParser(
        prog=prog, description="Peer-to-peer federated training daemon and tools.",
        epilog="global options (" + ", ".join(GLOBAL_OPTIONS) + ") may also come before "
               "the command; each command's --help lists those it takes.\n\n"
               + EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    subs = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module, add_fn, _run_fn, help_text) in SUBCOMMANDS.items():
        sub = subs.add_parser(name, help=help_text, description=help_text,
                              epilog=EXIT_CODES_HELP,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
        getattr(importlib.import_module(module), add_fn)(sub)
    return parser


def hoist_global_options(argv: Sequence[str]) -> list[str]:
    """Move global options written before the subcommand to the end of ``argv``.

    ``--data-dir D id`` becomes ``id --data-dir D``; anything else before the
    subcommand (``--version``, ``--help``, a typo) stays where it is for argparse.
    """
    before: list[str] = []
    moved: list[str] = []
    i = 0
    args = list(argv)
    while i < len(args):
        arg = args[i]
        name = arg.split("=", 1)[0]
        if arg in SUBCOMMANDS:
            return [*before, *args[i:], *moved]
        if name in GLOBAL_OPTIONS:
            takes_value = GLOBAL_OPTIONS[name]
            if takes_value and "=" not in arg and i + 1 < len(args):
                moved += [arg, args[i + 1]]
                i += 2
                continue
            moved.append(arg)
        else:
            before.append(arg)
        i += 1
    return [*before, *moved]


def main(argv: Sequence[str] | None = None, prog: str = "distro-train") -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``), run the subcommand, return its exit code."""
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(prog)
    args = parser.parse_args(hoist_global_options(argv))
    module, _add_fn, run_fn, _help = SUBCOMMANDS[args.command]
    try:
        code: int = getattr(importlib.import_module(module), run_fn)(args)
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stderr.close()
        return EXIT_BROKEN_PIPE
    return code


if __name__ == "__main__":
    sys.exit(main())
