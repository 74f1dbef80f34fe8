"""``wallet``, ``earnings``, ``redeem``, ``refund`` and ``lineage``: the market on the ledger.

Each asks the local daemon over its control socket (``market.*`` routes, see
p2pnode/market.py and docs/ledger.md). Amounts print in ETH (the chain's native
unit; 1 ETH = 10**18 wei); ``--json`` prints wei as decimal strings.
"""

from __future__ import annotations

import argparse
import time
from decimal import Decimal
from typing import Any

from p2pnode.commands.common import (
    add_client_flags,
    data_dir_of,
    fail_control,
    print_json,
)

WEI = Decimal(10**18)


def eth(wei: str | int) -> str:
    """``wei`` as ETH with up to 6 decimals."""
    return f"{(Decimal(int(wei)) / WEI):.6f}"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``wallet`` (and the base of the others)."""
    add_client_flags(parser, timeout_s=60.0, waits_for="the daemon and the ledger")


def add_job_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``earnings`` and ``redeem``: an optional job."""
    add_arguments(parser)
    parser.add_argument("job_id", nargs="?", metavar="JOB", help="only this job")


def add_refund_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``refund``: the job."""
    add_arguments(parser)
    parser.add_argument("job_id", metavar="JOB", help="the job whose unpaid budget to take back")


def add_lineage_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``lineage``."""
    add_arguments(parser)
    parser.add_argument("job_id", metavar="JOB")
    parser.add_argument("--verify", action="store_true",
                        help="check every model hash, parent link and Merkle root against "
                             "the ledger and the stored models (exit 1 on any mismatch)")


def _call(args: argparse.Namespace, method: str, params: dict[str, Any]) -> Any:
    from p2pnode.control import call

    return call(data_dir_of(args), method, params, timeout=args.timeout)


def _run(args: argparse.Namespace, method: str, params: dict[str, Any], show: Any) -> int:
    from p2pnode.errors import ControlError

    try:
        result = _call(args, method, params)
    except ControlError as exc:
        return fail_control(exc)
    if args.json:
        print_json(result)
        return 0
    return int(show(result) or 0)


def _job(args: argparse.Namespace) -> dict[str, Any]:
    return {"job_id": args.job_id} if getattr(args, "job_id", None) else {}


def run_wallet(args: argparse.Namespace) -> int:
    """Print this daemon's wallet address and balance."""
    def show(r: dict[str, Any]) -> None:
        print(f"address  {r['address']}")
        if r.get("ledger"):
            led = r["ledger"]
            print(f"balance  {eth(r['balance_wei'])} ETH")
            print(f"ledger   chain {led['chain_id']} at {led['rpc_url']}, "
                  f"contract {led['contract']}")
        else:
            print("ledger   none configured ([ledger] in config.toml; docs/ledger.md)")
    return _run(args, "market.wallet", {}, show)


def run_earnings(args: argparse.Namespace) -> int:
    """Print receipts pending and redeemed, per job."""
    def show(r: dict[str, Any]) -> None:
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"earnings of {r['address']}")
        for col in ("job", "pending", "pending ETH", "of them vesting", "redeemed",
                    "redeemed ETH", "forfeited ETH", "proven in round log"):
            table.add_column(col, justify="left" if col == "job" else "right")
        for job, row in sorted(r["jobs"].items()):
            table.add_row(job, str(row["pending"]), eth(row["pending_wei"]),
                          str(row.get("vesting", 0)), str(row["redeemed"]),
                          eth(row["redeemed_wei"]), eth(row.get("forfeited_wei", "0")),
                          str(row["proven"]))
        Console().print(table)
    return _run(args, "market.earnings", _job(args), show)


def run_redeem(args: argparse.Namespace) -> int:
    """Redeem every vested receipt (of one job), batched."""
    def show(r: dict[str, Any]) -> None:
        print(f"redeemed {r['redeemed']} receipts for {eth(r['wei'])} ETH "
              f"in {len(r['txs'])} transactions ({r['gas_used']} gas)")
        if r.get("held"):
            print(f"{r['held']} receipts not vested yet: their job has not ended")
        if r.get("forfeited"):
            print(f"{r['forfeited']} receipts ({eth(r['forfeited_wei'])} ETH) forfeited: "
                  "the job's owner caught this wallet cheating")
    return _run(args, "market.redeem", _job(args), show)


def run_refund(args: argparse.Namespace) -> int:
    """Take back a job's unpaid budget after its end and the grace period.

    A job the owner never ended on the ledger is ended first (the grace period
    starts then); run the command again once it is over.
    """
    def show(r: dict[str, Any]) -> None:
        if r.get("ended_now"):
            print("the job was not ended on the ledger: ended it now; run refund again after "
                  + time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r["refund_after"])))
            return
        print(f"refunded {eth(r['refunded_wei'])} ETH of {eth(r['deposit_wei'])} "
              f"({eth(r['paid_wei'])} paid to trainers)")
    return _run(args, "market.refund", _job(args), show)


def run_lineage(args: argparse.Namespace) -> int:
    """Print a job's model lineage; with ``--verify``, check it and exit 1 on a mismatch."""
    def show(r: dict[str, Any]) -> int:
        for v in r["versions"]:
            mark = "" if not args.verify else (" ok" if not v["problems"] else " FAILED")
            print(f"round {v['round']:>4}  model {v['model'][:16]}  parent {v['parent'][:16]}  "
                  f"{v['updates']} updates  root {v['updates_root'][:16]}{mark}")
            for p in v["problems"]:
                print(f"    {p}")
        for p in r["problems"]:
            print(p)
        if args.verify:
            ok = not r["problems"] and not any(v["problems"] for v in r["versions"])
            print("lineage verified" if ok else "lineage does NOT verify")
            return 0 if ok else 1
        return 0
    params = {"job_id": args.job_id, "verify": bool(args.verify)}
    from p2pnode.errors import ControlError

    try:
        result = _call(args, "market.lineage", params)
    except ControlError as exc:
        return fail_control(exc)
    if args.json:
        print_json(result)
        ok = not result["problems"] and not any(v["problems"] for v in result["versions"])
        return 0 if ok or not args.verify else 1
    return int(show(result))

