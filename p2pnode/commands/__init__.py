"""CLI subcommands: one module each, registered in :data:`p2pnode.cli.SUBCOMMANDS`.

A subcommand is (module, add-arguments function, run function, help): the first fills
an ``argparse`` parser, the second returns the exit code. Importing the module must
stay cheap: heavy imports (libp2p, trio, torch) go inside the run function.
"""
