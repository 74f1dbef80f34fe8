"""``distro-train completion bash|zsh``: print a shell completion script (via shtab).

Install: ``distro-train completion bash > /etc/bash_completion.d/distro-train`` or, for
zsh, ``distro-train completion zsh > "${fpath[1]}/_distro-train"``.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``SHELL``: bash or zsh."""
    parser.add_argument("shell", choices=["bash", "zsh"], help="the shell to complete for")


def run(args: argparse.Namespace) -> int:
    """Print the completion script for the whole command line."""
    import shtab

    from p2pnode.cli import build_parser

    print(shtab.complete(build_parser(), shell=args.shell))
    return 0
