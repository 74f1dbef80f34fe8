"""Arguments, exit codes and helpers shared by subcommands.

Exit codes (documented in ``distro-train --help`` and docs/operators.md):

====  =====================================================================
0     success
1     failed: the command ran and the outcome is a failure (a job ended
      failed or cancelled, a download did not verify, a doctor check failed)
2     usage: bad command line, config file or spec (nothing was attempted)
3     the daemon's shutdown exceeded ``timeouts.shutdown_s``
4     daemon unreachable: nothing answers on the data dir's control socket
5     refused: the daemon answered with an error (no such job, invalid spec)
130   interrupted (Ctrl-C / SIGTERM on a client command)
141   stdout closed early (piped into ``head``)
====  =====================================================================
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from p2pnode.errors import ControlError

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_SHUTDOWN_TIMEOUT = 3
EXIT_UNREACHABLE = 4
EXIT_REFUSED = 5
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141

EXIT_CODES_HELP = """\
exit codes:
  0    success
  1    failed (a job ended failed, a download did not verify, a doctor check failed)
  2    usage error (bad command line, config file or spec; nothing was attempted)
  3    daemon shutdown exceeded timeouts.shutdown_s
  4    daemon unreachable (nothing answers on the data dir's control socket)
  5    refused (the daemon answered with an error: no such job, invalid spec)
  130  interrupted
"""

JSON_HELP = "machine-readable output: one JSON document on stdout, everything else on stderr"
LOG_LEVEL_ENV = "DISTRO_TRAIN_LOG_LEVEL"
CALL_TIMEOUT_S = 10.0
"""Default of a client command's ``--timeout``: seconds to wait for the daemon."""


def add_data_dir(parser: argparse.ArgumentParser) -> None:
    """Add ``--data-dir`` (default: $DISTRO_TRAIN_HOME or ~/.distro-train)."""
    parser.add_argument(
        "--data-dir", type=Path, default=None,
        help="daemon data dir (default: $DISTRO_TRAIN_HOME or ~/.distro-train)",
    )


def add_json(parser: argparse.ArgumentParser) -> None:
    """Add ``--json`` (machine-readable output on stdout)."""
    parser.add_argument("--json", action="store_true", help=JSON_HELP)


def add_client_flags(parser: argparse.ArgumentParser, *, timeout_s: float = CALL_TIMEOUT_S,
                     waits_for: str = "the daemon") -> None:
    """Add ``--data-dir``, ``--json`` and ``--timeout``: the flags of a control-socket client.

    ``--timeout`` is how many seconds the command waits for ``waits_for``.
    """
    add_data_dir(parser)
    add_json(parser)
    parser.add_argument("--timeout", type=float, default=timeout_s,
                        help=f"seconds to wait for {waits_for} (default {timeout_s:g})")


def add_config(parser: argparse.ArgumentParser) -> None:
    """Add ``--config`` (default: DATA_DIR/config.toml when present)."""
    parser.add_argument("--config", type=Path, default=None,
                        help="TOML config file (default: DATA_DIR/config.toml when present)")


def add_logging(parser: argparse.ArgumentParser) -> None:
    """Add ``--log-level`` (default $DISTRO_TRAIN_LOG_LEVEL or INFO) and ``--log-format``."""
    parser.add_argument(
        "--log-level", default=None, metavar="LEVEL[,LOGGER=LEVEL...]",
        help=f"DEBUG, INFO, WARNING or ERROR, optionally per logger, e.g. "
             f"'INFO,libp2p=DEBUG' (default: ${LOG_LEVEL_ENV} or INFO; libp2p WARNING)")
    parser.add_argument("--log-format", choices=["text", "json"], default="text",
                        help="text (default) or json: one JSON object per line on stderr")


def log_level_of(args: argparse.Namespace) -> str:
    """The ``--log-level`` flag, else ``$DISTRO_TRAIN_LOG_LEVEL``, else ``INFO``."""
    return str(getattr(args, "log_level", None) or os.environ.get(LOG_LEVEL_ENV) or "INFO")


def data_dir_of(args: argparse.Namespace) -> Path:
    """Return the data dir named by ``--data-dir`` or the environment default."""
    from p2pnode.config import default_data_dir

    return Path(args.data_dir).expanduser() if args.data_dir else default_data_dir()


def fail(message: str, code: int = EXIT_FAILED) -> int:
    """Print a one-line error to stderr and return ``code``."""
    print(f"distro-train: {message}", file=sys.stderr)
    return code


def fail_control(exc: ControlError) -> int:
    """Report a control-socket error: unreachable (4) when no answer came, else refused (5)."""
    return fail(str(exc), EXIT_UNREACHABLE if exc.code == 0 else EXIT_REFUSED)


def print_json(value: Any) -> None:
    """Print ``value`` as indented JSON on stdout."""
    print(json.dumps(value, indent=2, sort_keys=True), flush=True)
