"""CLI subcommands: one module each, registered in :data:`p2pnode.cli.SUBCOMMANDS`.

A subcommand module defines ``HELP: str``, ``add_arguments(parser) -> None`` and
``run(args) -> int`` (the exit code). Importing it must stay cheap: heavy imports
(libp2p, trio, torch) go inside ``run``.
"""
