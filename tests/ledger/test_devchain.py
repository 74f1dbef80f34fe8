"""What keeps the ledger's long-lived processes small (issue 17): the dev chain's wrapper
deploys from a child process; the contract's reads go out without web3."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import distro_procs
from ledger.client import Market
from ledger.devchain import ChainInfo, DevChain, dev_rpc
from ledger.receipts import job_key
from tests.ledger.conftest import funded_wallet

REPO = Path(__file__).resolve().parents[2]


def test_deploy_apart_gives_a_working_contract() -> None:
    """A contract deployed by the child answers with the grace period it was given."""
    with DevChain(grace_s=77, vest_s=99, deploy_apart=True) as info:
        code = dev_rpc(info.rpc_url, "eth_getCode", [info.contract, "latest"])
        assert isinstance(code, str) and len(code) > 100
        market = Market(info.rpc_url, info.contract, bytes(range(1, 33)))
        assert market.chain_id == info.chain_id
        assert market.grace_s() == 77
        assert market.vest_s() == 99


def test_wrapper_module_does_not_import_web3() -> None:
    """``python -m ledger.devchain`` imports web3 only in its deploying child."""
    code = "import sys, ledger.devchain; print('web3' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=REPO).stdout
    assert out.strip() == "False"


def test_views_read_what_web3_reads(chain: ChainInfo) -> None:
    """The plain eth_call views decode the same job record and round log as web3."""
    owner = funded_wallet(chain)
    market = Market(chain.rpc_url, chain.contract, owner.key)
    market.deposit("views-job", 12345)
    market.commit_round("views-job", 1, model="ab" * 32, parent="", updates_root=b"\x07" * 32)
    row = market.contract.functions.jobs(job_key("views-job")).call()
    state = market.job("views-job")
    assert (state.owner, state.deposit, state.rounds) == (row[0], row[1], row[5]) \
        == (owner.address, 12345, 1)
    log = market.round_log("views-job")
    assert [(c.round, c.model, c.updates_root) for c in log] == [(1, "ab" * 32, "07" * 32)]
    assert market.vested("views-job") is False
    assert market.forfeited("views-job", owner.address) is False


def test_reads_do_not_import_web3(chain: ChainInfo) -> None:
    """A trainer's reads (chain id, escrow, balance) leave web3 unimported (issue 17)."""
    code = ("import sys; from ledger.client import Market; "
            f"m = Market({chain.rpc_url!r}, {chain.contract!r}, bytes(range(1, 33))); "
            "print(m.chain_id, m.job('nope').deposit, m.grace_s() > 0, m.balance(m.sender), "
            "'web3' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=REPO).stdout
    assert out.split() == [str(chain.chain_id), "0", "True", "0", "False"]


def test_owner_transactions_do_not_import_web3(chain: ChainInfo) -> None:
    """An owner's deposit, round commit, end and a revert leave web3 and eth_account out."""
    owner = funded_wallet(chain)
    code = ("import sys; from ledger.client import Market; from ledger.errors import TxRefused; "
            f"m = Market({chain.rpc_url!r}, {chain.contract!r}, "
            f"bytes.fromhex({owner.key.hex()!r})); "
            "m.deposit('lean-job', 5); "
            "m.commit_round('lean-job', 1, model='ab' * 32, parent='', updates_root=bytes(32)); "
            "m.end_job('lean-job'); "
            "refused = False\n"
            "try:\n    m.refund('lean-job')\n"
            "except TxRefused:\n    refused = True\n"
            "print(m.job('lean-job').deposit, m.job('lean-job').rounds, refused, "
            "sorted(n for n in ('web3', 'eth_account', 'eth_utils') if n in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=REPO).stdout
    assert out.strip().split(maxsplit=3) == ["5", "1", "True", "[]"]


def test_foreground_chain_prints_its_line_and_stops_on_sigterm() -> None:
    """``python -m ledger.devchain`` becomes anvil; its helper deploys and prints the line."""
    # distro_procs.spawn, so that anvil dies with a killed test run too.
    process = distro_procs.spawn([sys.executable, "-m", "ledger.devchain", "--grace-s", "5"],
                                 None, stdout=subprocess.PIPE, cwd=REPO)
    try:
        assert process.stdout is not None
        info = json.loads(process.stdout.readline())
        assert info["chain_id"] == 31337
        assert Market(info["rpc_url"], info["contract"]).grace_s() == 5
        assert "anvil" in Path(f"/proc/{process.pid}/cmdline").read_text()
        assert distro_procs.stop([process], 30)[0] in (0, -signal.SIGTERM)  # SIGTERM first
    finally:
        distro_procs.kill(process)
        if process.stdout is not None:
            process.stdout.close()
