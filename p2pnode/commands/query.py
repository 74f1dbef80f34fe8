"""``id``, ``peers`` and ``status``: ask the local daemon over its control socket."""

from __future__ import annotations

import argparse
from typing import Any

from p2pnode.commands.common import add_client_flags, data_dir_of, fail_control, print_json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the common query flags."""
    add_client_flags(parser)


def _call(args: argparse.Namespace, method: str) -> Any:
    from p2pnode.control import call

    return call(data_dir_of(args), method, {}, timeout=args.timeout)


def run_id(args: argparse.Namespace) -> int:
    """Print this daemon's peer id and addresses."""
    return _run(args, "node.id", _show_mapping)


def run_peers(args: argparse.Namespace) -> int:
    """Print the live peers."""
    return _run(args, "node.peers", _show_peers)


def run_status(args: argparse.Namespace) -> int:
    """Print the daemon's status."""
    return _run(args, "node.status", _show_mapping)


def _run(args: argparse.Namespace, method: str, show: Any) -> int:
    from p2pnode.errors import ControlError

    try:
        result = _call(args, method)
    except ControlError as exc:
        return fail_control(exc)
    if args.json:
        print_json(result)
    else:
        show(result)
    return 0


def _show_mapping(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(show_header=False)
    for key, value in result.items():
        if isinstance(value, list):
            value = "\n".join(str(v) for v in value)
        elif isinstance(value, dict):
            value = ", ".join(f"{k}={v}" for k, v in value.items())
        table.add_row(key, str(value))
    Console().print(table)


def _show_peers(result: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{len(result)} live peers")
    for col in ("peer id", "health", "reputation", "accepting", "cpu%", "mem%", "queue", "gpu",
                "seen", "address"):
        table.add_column(col)
    for p in result:
        rep = p.get("reputation")
        table.add_row(
            p["peer_id"], f"{p['health']:.1f}", "-" if rep is None else f"{rep:+.1f}",
            "yes" if p["accepting"] else "no",
            f"{p['cpu_percent']:.0f}", f"{p['mem_percent']:.0f}",
            f"{p['queue_length']}/{p['queue_capacity']}", p["gpu"] or "-",
            f"{p['last_seen_s']:.1f}s ago", p["addrs"][0] if p["addrs"] else "-",
        )
    Console().print(table)
