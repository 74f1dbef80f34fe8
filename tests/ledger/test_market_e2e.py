"""A paid job over real daemon processes and a real anvil chain.

Bootstrap, owner and four trainers run as OS processes; the embedded S3 server
holds the data; anvil (from npm) holds the escrow. Two trainers are honest, one
returns the global model unchanged (every update rejected as ``no_progress``), and
a sleeper trains honestly in round 1 (verified on probation, paid a receipt) and
lazily in round 2, where the owner (every task spot-checked here) catches it: its
round-1 receipt is forfeited. After the job the owner is killed with SIGKILL and
the trainers redeem their receipts themselves; then the owner's refund is checked
against what was paid: the budget minus the honest pay, the forfeited pay included.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

from ledger import receipts as rc
from ledger.client import Market
from ledger.devchain import DevChain, dev_rpc, fund
from ledger.wallet import Wallet
from p2pnode.commands.demo import clean_env, launch
from p2pnode.control import call
from p2pnode.procs import Processes, start_embedded_s3
from storage.config import StoreConfig
from storage.s3 import S3Store
from tests.conftest import wait_for
from tests.jobspecs import DIGITS_JOB

ETH = 10**18
BUDGET = ETH
MAX_PRICE = ETH // 10
ASK = ETH // 20
ROUNDS = 2
JOB = {
    **DIGITS_JOB,
    "model": "mlp",
    "model_params": {"hidden": [32]},
    "trainers": 4,
    "rounds": ROUNDS,
    "epochs": 2,
    "price": {"budget": str(BUDGET), "max_price": str(MAX_PRICE), "unit": "update"},
}


def toml(name: str, values: dict[str, object]) -> str:
    return f"[{name}]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in values.items())


def lineage(owner_dir: Path, job_id: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "p2pnode.cli", "lineage", job_id, "--verify",
         "--data-dir", str(owner_dir)], capture_output=True, text=True, timeout=120)


def tamper_last_model(storage: dict[str, str], round_no: int) -> None:
    """Flip one byte of the stored global model of ``round_no`` (a storage operator's edit)."""
    store = S3Store(StoreConfig.from_mapping(storage, env={}))
    pages = store.client.get_paginator("list_objects_v2").paginate(Bucket=store.config.bucket)
    keys = [o["Key"] for page in pages for o in page.get("Contents", [])
            if f"/models/{round_no}-" in o["Key"] and o["Key"].endswith(".safetensors")]
    assert len(keys) == 1, keys
    data = bytearray(store.get_bytes(keys[0]))
    data[len(data) // 2] ^= 0xFF
    store.put_bytes(keys[0], bytes(data))


def test_paid_job_receipts_redeem_after_owner_crash_and_refund(tmp_path: Path) -> None:
    (tmp_path / "logs").mkdir()
    chain = DevChain(grace_s=2, log_path=tmp_path / "logs" / "anvil.log")
    info = chain.start()
    procs = Processes(tmp_path)
    try:
        owner_key = tmp_path / "owner.key"
        owner_key.touch(mode=0o600)
        owner_wallet = Wallet.from_key(secrets.token_bytes(32))
        owner_key.write_text(owner_wallet.key.hex())
        fund(info.rpc_url, owner_wallet.address, 10 * ETH)
        ledger = {"rpc_url": info.rpc_url, "chain_id": info.chain_id, "contract": info.contract}
        storage = start_embedded_s3(procs, "s3", tmp_path / "s3", clean_env())
        daemon = ["-m", "p2pnode.cli", "daemon"]
        adversary = ["-m", "tests.job.adversary_daemon"]
        cluster = launch(
            tmp_path, procs, storage, trainers=4, say=lambda _m: None,
            trainer_programs=[daemon, daemon, [*adversary, "freeload"], [*adversary, "sleeper"]],
            owner_toml=toml("ledger", {**ledger, "key_file": str(owner_key)})
            + toml("owner", {"spot_check_rate": 1.0}),
            trainer_toml=toml("ledger", ledger) + toml("market", {"ask": str(ASK)}),
        )
        trainers = [tmp_path / f"trainer-{i}" for i in range(4)]
        addresses = [call(t, "market.wallet")["address"] for t in trainers]
        for a in addresses:
            fund(info.rpc_url, a, ETH)
        assert call(cluster.owner_dir, "market.wallet")["address"] == owner_wallet.address

        job_id = call(cluster.owner_dir, "jobs.submit", {"spec": JOB})["job_id"]

        def finished() -> dict | None:  # type: ignore[type-arg]
            procs.check_alive()
            s = call(cluster.owner_dir, "jobs.status", {"job_id": job_id})
            return s if s["state"] not in ("preparing", "running") else None

        status = wait_for(finished, 240, interval=0.5, what="the paid job to finish")
        assert status["state"] == "done", status.get("error")
        market_status = status["market"]
        listed = call(cluster.owner_dir, "jobs.list")[0]
        assert listed["market"]["budget_left"] == market_status["budget_left"]

        # The lineage verifies from the ledger and storage, and not once a model is altered.
        assert lineage(cluster.owner_dir, job_id).returncode == 0
        tamper_last_model(storage, ROUNDS)
        bad = lineage(cluster.owner_dir, job_id)
        assert bad.returncode == 1 and "model in storage hashes to" in bad.stdout, bad.stdout

        # `distro-train jobs` shows the price and the budget left.
        listing = subprocess.run(
            [sys.executable, "-m", "p2pnode.cli", "jobs", "--data-dir", str(cluster.owner_dir)],
            capture_output=True, text=True, timeout=60, env={**os.environ, "COLUMNS": "250"})
        left = int(market_status["budget_left"])
        assert f"{MAX_PRICE / ETH:.6f}" in listing.stdout
        assert f"{left / ETH:.6f}" in listing.stdout, listing.stdout

        # The owner crashes; the trainers do not need it to be paid.
        procs.kill("owner")
        reader = Market(info.rpc_url, info.contract)
        earned: dict[str, int] = {}
        forfeited: dict[str, int] = {}
        for t, address in zip(trainers, addresses, strict=True):
            before = reader.balance(address)
            kept = json.loads((t / "market" / "earnings.json").read_text()) \
                if (t / "market" / "earnings.json").exists() else []
            got = call(t, "market.redeem", {"job_id": job_id}, timeout=60)
            assert got["held"] == 0  # the owner ended the job: every receipt has vested
            forfeited[address] = got["forfeited"]
            owed = 0 if got["forfeited"] else sum(int(k["receipt"]["amount"]) for k in kept)
            assert int(got["wei"]) == owed
            after = reader.balance(address)
            # The balance rises by exactly the receipts' sum (net of the gas it paid).
            assert after - before + reader.fees(got["txs"]) == owed
            earned[address] = owed
            again = call(t, "market.earnings", {"job_id": job_id})
            row = again["jobs"].get(job_id, {})
            assert row.get("pending", 0) == 0
            # Each paid update is proven in its round's root as committed on the ledger.
            assert row.get("proven", 0) == len(kept)
            assert row.get("redeemed", 0) + row.get("forfeited", 0) == len(kept)

        honest, freeloader, sleeper = addresses[:2], addresses[2], addresses[3]
        assert earned[freeloader] == 0, "a trainer whose updates were all rejected earns nothing"
        # The sleeper was paid for round 1, then caught: it keeps nothing of the job.
        sleeper_peer = call(trainers[3], "node.id")["peer_id"]
        assert status["cheaters"].get(sleeper_peer), status["cheaters"]
        assert forfeited[sleeper] >= 1 and earned[sleeper] == 0, (forfeited, earned)
        assert market_status["forfeited"].get(sleeper), market_status
        assert reader.forfeited(job_id, sleeper)
        assert all(earned[a] > 0 for a in honest)
        # Uniform price: every used update paid the highest selected ask (all ask ASK).
        assert all(earned[a] % ASK == 0 for a in honest)
        paid = sum(earned.values())
        assert int(market_status["promised"]) == paid == BUDGET - left
        state = reader.job(job_id)
        assert (state.deposit, state.paid) == (BUDGET, paid)

        # The round log: one entry per round, chained, with the used updates' root.
        log = reader.round_log(job_id)
        assert [c.round for c in log] == list(range(1, ROUNDS + 1))
        assert log[-1].model == status["model_sha256"]
        for prev, cur in zip(log, log[1:], strict=False):
            assert cur.parent == prev.model
        for c, rec in zip(log, status["history"], strict=True):
            assert bytes.fromhex(c.updates_root) == rc.merkle_root(rec["used_updates"])

        # The refund: after end + grace, the owner takes back the budget minus what was paid.
        def grace_over() -> bool:
            # anvil mines only on demand; a live chain's blocks keep coming by themselves.
            dev_rpc(info.rpc_url, "evm_mine", [])
            latest = reader.w3.eth.get_block("latest")["timestamp"]
            return int(latest) >= state.ended_at + reader.grace_s()

        wait_for(grace_over, 15, interval=0.5, what="the grace period")
        owner_market = Market(info.rpc_url, info.contract, owner_wallet.key)
        before = owner_market.balance(owner_wallet.address)
        tx = owner_market.refund(job_id)
        refund = (owner_market.balance(owner_wallet.address) - before
                  + owner_market.fees([tx.tx_hash]))
        assert refund == BUDGET - paid
    finally:
        procs.stop_all()
        chain.stop()
        if os.environ.get("KEEP_LOGS"):
            print(tmp_path)
