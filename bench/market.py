"""What the ledger costs a paid job, over real processes and a real anvil chain.

A bootstrap node, an owner and N trainer daemons (separate OS processes) on an
embedded S3 server and a local anvil chain (the demo's set-up); the demo's job
(2NN on MNIST by default, ``--dataset digits`` for a quick run), paid per verified
update (docs/ledger.md, "What is paid"). For each round the owner's time
spent on the ledger (signing the receipts and committing the round) and the gas of
its commitment; then, the owner having ended the job (its receipts vest), every
trainer redeems its receipts itself and the owner takes back the rest after the
grace period. All trainers are honest: nobody is forfeited.

Printed: gas and ledger seconds per round; the ledger's share of round time (sum
of ledger seconds over sum of round seconds, both measured by the owner in the
same run); the redemption and refund gas. ``paid_equals_receipts`` is true when
every trainer's balance rose by exactly the sum of its receipts (net of the gas it
paid), the contract's paid total equals the receipts the owner signed, and the
refund is the budget minus that. Target: ledger_share_of_round <= 0.1.

    .venv/bin/python bench/market.py [--trainers 4] [--rounds 5] [--dataset mnist]
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path
from typing import Any

from localrun import job_end, start_storage

from ledger.client import Market
from ledger.devchain import dev_rpc
from p2pnode.commands import demo_market
from p2pnode.commands.demo import DATASET_DEFAULTS, clean_env, launch
from p2pnode.control import call

ETH = 10**18
BUDGET = ETH
ASK = ETH // 200


def _print_rounds(market: dict[str, Any], history: list[dict[str, Any]],
                  trainers: int) -> tuple[float, float]:
    """Print the rounds' time and the owner's gas; return round and ledger seconds."""
    round_s = sum(r["round_seconds"] for r in history)
    ledger_s = float(market["ledger_s"])
    print(f"rounds={len(history)} trainers={trainers}")
    print(f"round_seconds_total={round_s:.3f} ledger_seconds_total={ledger_s:.3f}")
    print(f"ledger_seconds_per_round={ledger_s / len(history):.4f}")
    forfeits = len(market.get("forfeited", {}))
    print(f"gas_total_owner={market['gas_used']} "
          f"(deposit + {len(history)} commitments + {forfeits} forfeits + end)")
    print(f"commit_gas_per_round={market['commit_gas'] // len(history)}")
    return round_s, ledger_s


def _redeem_all(reader: Market, trainers: list[Path], job_id: str) -> tuple[bool, int]:
    """Each trainer redeems its receipts; whether every balance rose by what it was paid."""
    ok, redeem_gas = True, 0
    for t in trainers:
        address = call(t, "market.wallet")["address"]
        before = reader.balance(address)
        got = call(t, "market.redeem", {"job_id": job_id}, timeout=120)
        redeem_gas += int(got["gas_used"])
        delta = reader.balance(address) - before + reader.fees(got["txs"])
        ok &= delta == int(got["wei"])
        ok &= got["held"] == 0  # the job ended: nothing may still be vesting
        print(f"trainer {address}: {got['redeemed']} receipts, {int(got['wei']) / ETH:.6f} "
              f"ETH, balance rose by {delta / ETH:.6f} ETH + gas; "
              f"held {got['held']} forfeited {got['forfeited']}")
    return ok, redeem_gas


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trainers", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--dataset", default="mnist", choices=sorted(DATASET_DEFAULTS))
    args = parser.parse_args()
    procs, storage = start_storage("bench-market-")
    work = procs.work
    try:
        env = clean_env()
        chain = demo_market.start_chain(procs, env)
        owner_toml, trainer_toml = demo_market.tomls(chain, demo_market.Decimal("0.005"))
        owner = launch(work, procs, storage, args.trainers, say=lambda m: None,
                       owner_toml=owner_toml, trainer_toml=trainer_toml).owner_dir
        trainers = [work / f"trainer-{i}" for i in range(args.trainers)]
        demo_market.fund(chain, [owner, *trainers])
        # The demo's job (McMahan's 2NN, Dirichlet(0.5), the dataset's tuned settings).
        spec = {
            "model": "mlp", "dataset": args.dataset, **DATASET_DEFAULTS[args.dataset],
            "trainers": args.trainers, "rounds": args.rounds, "partition": "dirichlet",
            "alpha": 0.5, "round_deadline_s": 300.0,
            "price": {"budget": str(BUDGET), "max_price": str(ETH // 100), "unit": "update"},
        }
        job_id = call(owner, "jobs.submit", {"spec": spec})["job_id"]
        status = job_end(procs, owner, job_id, 60.0 * args.rounds + 120)
        if status["state"] != "done":
            print(f"job ended {status['state']}: {status.get('error')}", file=sys.stderr)
            return 1
        market = status["market"]
        round_s, ledger_s = _print_rounds(market, status["history"], args.trainers)
        reader = Market(chain["rpc_url"], chain["contract"])
        ok, redeem_gas = _redeem_all(reader, trainers, job_id)
        state = reader.job(job_id)
        ok &= state.paid == int(market["promised"])
        print(f"redeem_gas_total={redeem_gas} receipts={market['receipts']} "
              f"gas_per_receipt={redeem_gas // max(1, market['receipts'])}")
        dev_rpc(chain["rpc_url"], "evm_mine", [])
        refund = demo_market.settle(chain, owner, [], job_id, say=lambda m: None)["owner"]
        ok &= int(refund["refunded_wei"]) == BUDGET - state.paid
        print(f"paid={state.paid / ETH:.6f} ETH refund={int(refund['refunded_wei']) / ETH:.6f} "
              f"ETH refund_gas={refund['gas_used']}")
        share = ledger_s / round_s if round_s else float("nan")
        print(f"ledger_share_of_round={share:.4f} paid_equals_receipts={str(ok).lower()}")
        return 0
    finally:
        procs.stop_all()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
