"""``web``: print the dashboard's login URL (it carries the bearer token once).

The daemon serves the dashboard when its config has ``[web] enabled = true``; it
writes its URL to ``DATA_DIR/web.json`` and keeps the token in ``DATA_DIR/web.token``
(mode 0600). This command reads both, so it works for the daemon's own user only.
"""

from __future__ import annotations

import argparse

from p2pnode.commands.common import add_data_dir, data_dir_of, fail

UNREACHABLE = 4
"""The exit code of every client command that finds no daemon (docs/operators.md)."""

DESCRIPTION = """\
Print the URL that logs a browser into the local daemon's web dashboard. The token
travels in the URL's #fragment, which the browser never sends to any server; the page
keeps it for the tab's lifetime (sessionStorage, no cookies) and removes it from the
address bar. Enable the dashboard with [web] enabled = true in the daemon's config
(default address http://127.0.0.1:9470/; see docs/web.md).
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``web``'s flags."""
    parser.description = DESCRIPTION
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    add_data_dir(parser)


def run(args: argparse.Namespace) -> int:
    """Print the login URL of the running dashboard."""
    from p2pnode.web.auth import token_path
    from p2pnode.web.server import data_dir_address

    data_dir = data_dir_of(args)
    address = data_dir_address(data_dir)
    if address is None:
        return fail(f"no dashboard runs at {data_dir}: start the daemon with "
                    "[web] enabled = true in its config", UNREACHABLE)
    try:
        token = token_path(data_dir).read_text(encoding="ascii").strip()
    except OSError as exc:
        return fail(f"cannot read the dashboard token: {exc}", UNREACHABLE)
    print(f"{address['url']}#token={token}")
    return 0
