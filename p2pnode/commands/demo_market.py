"""The demo's market: a local anvil chain, funded wallets, and who earned what at the end.

The demo runs every job paid (``--no-market`` turns this off): it starts the dev
chain (``python -m ledger.devchain``, anvil from npm, the contract deployed) as
one more child process, gives every daemon the ``[ledger]`` table, funds each
wallet with 100 ETH of dev-chain money, and prices the job at ``--budget`` with at
most ``--max-price`` per accepted update. Trainers ask ``--ask`` plus 10% of it per
task already queued (``rule = "queue"``). When the job is done, every trainer
redeems its receipts itself, the owner waits out the grace period and takes back
the rest, and the demo prints the table.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

from p2pnode.procs import Processes

ETH = 10**18
DEV_FUNDS = 100 * ETH
GRACE_S = 2
"""The demo contract's grace period after a job's end (seconds)."""
CALL_TIMEOUT_S = 60.0
REFUND_WAIT_S = 30.0
"""How long after the grace period the demo keeps asking for the refund."""
REFUND_RETRY_S = 0.5
"""How often the demo asks for the refund while the grace period runs."""


def add_arguments(a: Any) -> None:
    """The demo's market flags (``a`` is ``parser.add_argument``)."""
    a("--no-market", action="store_true",
      help="run the job unpaid, without the local chain (default: paid, on anvil)")
    a("--budget", type=Decimal, default=Decimal("1"),
      help="ETH the owner escrows for the job (default 1)")
    a("--max-price", type=Decimal, default=Decimal("0.01"),
      help="most ETH paid per accepted update (default 0.01)")
    a("--ask", type=Decimal, default=Decimal("0.005"),
      help="trainers' base ask in ETH per update (default 0.005)")


def wei(value: Decimal) -> int:
    """ETH as wei."""
    return int(value * ETH)


def start_chain(procs: Processes, env: Mapping[str, str]) -> dict[str, Any]:
    """Run the dev chain as child ``anvil``; return ``{"rpc_url", "chain_id", "contract"}``."""
    proc = procs.start("anvil", ["-m", "ledger.devchain", "--grace-s", str(GRACE_S)], env,
                       stdout=subprocess.PIPE)
    line = proc.stdout.readline() if proc.stdout is not None else b""
    if not line:
        procs.check_alive()
        raise RuntimeError("the dev chain printed nothing")
    info: dict[str, Any] = json.loads(line)
    return info


def tomls(info: Mapping[str, Any], ask: Decimal) -> tuple[str, str]:
    """``(owner_toml, trainer_toml)``: the ledger table, and the trainers' ask rule."""
    ledger = (f"[ledger]\nrpc_url = {json.dumps(info['rpc_url'])}\n"
              f"chain_id = {int(info['chain_id'])}\n"
              f"contract = {json.dumps(info['contract'])}\n")
    market = (f'[market]\nask = "{wei(ask)}"\nrule = "queue"\n'
              f'ask_per_queued = "{wei(ask) // 10}"\n')
    return ledger, ledger + market


def price(args: Any) -> dict[str, Any]:
    """The job spec's ``[price]`` table from the flags."""
    return {"budget": str(wei(args.budget)), "max_price": str(wei(args.max_price)),
            "unit": "update"}


def fund(info: Mapping[str, Any], dirs: list[Path]) -> None:
    """Give each daemon's wallet dev-chain money (anvil_setBalance)."""
    from ledger.devchain import fund as set_balance
    from p2pnode.control import call

    for d in dirs:
        set_balance(info["rpc_url"], call(d, "market.wallet")["address"], DEV_FUNDS)


def settle(info: Mapping[str, Any], owner: Path, trainers: list[Path], job_id: str,
           say: Any) -> dict[str, Any]:
    """Trainers redeem, the owner refunds after the grace period; return the summary."""
    from ledger.devchain import dev_rpc
    from p2pnode.control import call

    rows = []
    for i, t in enumerate(trainers):
        got = call(t, "market.redeem", {"job_id": job_id}, timeout=CALL_TIMEOUT_S)
        rows.append({"trainer": f"trainer-{i}", "address": call(t, "market.wallet")["address"],
                     "receipts": got["redeemed"], "earned_wei": got["wei"],
                     "forfeited_wei": got.get("forfeited_wei", "0")})
    deadline = time.monotonic() + GRACE_S + REFUND_WAIT_S
    while True:
        # anvil mines on demand: one empty block moves the chain's clock to now.
        dev_rpc(info["rpc_url"], "evm_mine", [])
        try:
            refund = call(owner, "market.refund", {"job_id": job_id}, timeout=CALL_TIMEOUT_S)
            break
        except Exception as exc:  # noqa: BLE001 - refused until the grace period is over
            if "grace period not over" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(REFUND_RETRY_S)
    summary = {"trainers": rows, "owner": refund}
    _print(summary, say)
    return summary


def _eth(w: str | int) -> str:
    return f"{Decimal(int(w)) / ETH:.6f}"


def _print(summary: dict[str, Any], say: Any) -> None:
    say("who earned what (ETH):")
    for r in summary["trainers"]:
        lost = int(r.get("forfeited_wei", 0))
        say(f"  {r['trainer']:<10} {r['address']}  {r['receipts']:>3} receipts  "
            f"{_eth(r['earned_wei']):>10}" + (f"  (forfeited {_eth(lost)})" if lost else ""))
    o = summary["owner"]
    say(f"  owner escrowed {_eth(o['deposit_wei'])}, paid {_eth(o['paid_wei'])}, "
        f"refunded {_eth(o['refunded_wei'])}")
