"""The dev chain's wrapper stays small: it deploys from a child process (issue 17)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from ledger.client import Market
from ledger.devchain import DevChain, dev_rpc

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
