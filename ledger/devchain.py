"""The local development chain: anvil (Foundry) installed from npm, in a child process.

Why anvil: it is a maintained, single static binary (``@foundry-rs/anvil`` on npm,
pinned in ``ledger/chain/package-lock.json``, installed by ``make``'s set-up), serves
the standard Ethereum JSON-RPC that web3 and Hedera's relay speak, mines each
transaction at once (a round's receipts and commitment cost milliseconds), starts in
well under a second, and has dev methods the tests need (``anvil_setBalance`` to
fund wallets, ``evm_increaseTime`` to pass a grace period). An in-process py-evm
chain would not be a separate JSON-RPC node, and the issue asks integration tests to
run against one; Hardhat needs a whole JavaScript project.

``DevChain(...).start()`` runs it on 127.0.0.1 with a free port, waits until it
answers, deploys the market contract with anvil's first dev account, and returns
``(rpc_url, chain_id, contract)``. ``stop()`` ends it. The chain lives in memory:
it is a development ledger, gone when the process ends.

Run on its own (the demo does)::

    python -m ledger.devchain [--grace-s N] [--vest-s N]

prints one JSON line ``{"rpc_url", "chain_id", "contract"}`` and serves until
SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import distro_procs
from ledger.errors import DevChainError, LedgerError

CHAIN_DIR = Path(__file__).resolve().parent / "chain"
CHAIN_ID = 31337
#: anvil's first dev account (public, from its default mnemonic): deploys and funds.
DEV_KEY = bytes.fromhex("ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80")
#: Grace period of the contract deployed on the dev chain (seconds).
DEV_GRACE_S = 60
#: Longest the dev contract holds a job's receipts before they vest (seconds); a
#: job the owner ends vests at once.
DEV_VEST_S = 3600
#: How long anvil may take to answer its first request.
STARTUP_TIMEOUT_S = 20.0
#: How long a stopping anvil may take before its group is killed.
STOP_TIMEOUT_S = 5.0
#: Each dev JSON-RPC request's HTTP timeout (``dev_rpc``).
DEV_RPC_TIMEOUT_S = 2.0
#: How long the contract's deployment may take in its own process (``deploy_apart``).
DEPLOY_TIMEOUT_S = 120.0
#: How often start-up checks whether anvil answers.
_POLL_S = 0.05


def anvil_path() -> str:
    """The anvil binary: ``$DISTRO_ANVIL``, the npm-installed one, or one on PATH.

    Raises:
        DevChainError: none found (run ``make venv``, which runs ``npm ci``).
    """
    env = os.environ.get("DISTRO_ANVIL")
    if env:
        return env
    found = sorted(glob.glob(str(CHAIN_DIR / "node_modules/@foundry-rs/anvil-*/bin/anvil")))
    if found:
        return found[0]
    on_path = shutil.which("anvil")
    if on_path:
        return on_path
    raise DevChainError("anvil not found: run `make venv` (npm ci in ledger/chain)",
                        reason="anvil_missing")


@dataclass(frozen=True)
class ChainInfo:
    """Where the dev chain answers and the contract it was deployed with."""

    rpc_url: str
    chain_id: int
    contract: str


class DevChain:
    """An anvil process owned by this process.

    Args:
        grace_s: the deployed contract's grace period after a job's end.
        vest_s: the deployed contract's longest hold of a job's receipts.
        log_path: where anvil's output goes (discarded when None).
        deploy_apart: deploy the contract from a short-lived child process, so that
            this one never imports web3 (for a caller that lives as long as the
            chain: web3 would keep ~45 MB resident in it, issue 17).
    """

    def __init__(self, *, grace_s: int = DEV_GRACE_S, vest_s: int = DEV_VEST_S,
                 log_path: Path | None = None, deploy_apart: bool = False) -> None:
        self.grace_s, self.vest_s = grace_s, vest_s
        self.log_path = log_path
        self.deploy_apart = deploy_apart
        self.info: ChainInfo | None = None
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> ChainInfo:
        """Start anvil, wait for it, deploy the contract.

        Raises:
            DevChainError: anvil is missing, exited, or did not answer in time.
        """
        port = distro_procs.free_port()
        process = self._process = distro_procs.spawn(
            [anvil_path(), "--host", "127.0.0.1", "--port", str(port),
             "--chain-id", str(CHAIN_ID)], self.log_path)
        rpc_url = f"http://127.0.0.1:{port}"

        def exited() -> None:
            if process.poll() is not None:
                raise DevChainError(f"anvil exited with {process.returncode}")

        try:
            distro_procs.wait_until(lambda: _answers(rpc_url), STARTUP_TIMEOUT_S, "anvil",
                                    check=exited, interval_s=_POLL_S)
        except TimeoutError:
            self.stop()
            raise DevChainError(f"anvil did not answer in {STARTUP_TIMEOUT_S:.0f}s",
                                reason="devchain_timeout") from None
        try:
            contract = (_deploy_apart if self.deploy_apart else deploy)(
                rpc_url, self.grace_s, self.vest_s)
        except DevChainError:
            self.stop()
            raise
        self.info = ChainInfo(rpc_url=rpc_url, chain_id=CHAIN_ID, contract=contract)
        return self.info

    def stop(self) -> None:
        """End anvil (idempotent)."""
        if self._process is not None:
            distro_procs.stop([self._process], STOP_TIMEOUT_S)
        self._process = None

    def __enter__(self) -> ChainInfo:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def deploy(rpc_url: str, grace_s: int, vest_s: int) -> str:
    """Deploy the market contract with the dev account; its address."""
    from ledger.client import Market

    return Market.deploy(rpc_url, DEV_KEY, grace_s=grace_s, vest_s=vest_s)


def _deploy_apart(rpc_url: str, grace_s: int, vest_s: int) -> str:
    """:func:`deploy` in a child process (``python -m ledger.devchain --deploy-to``)."""
    argv = [sys.executable, "-m", "ledger.devchain", "--deploy-to", rpc_url,
            "--grace-s", str(grace_s), "--vest-s", str(vest_s)]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, check=False,
                              timeout=DEPLOY_TIMEOUT_S, cwd=Path(__file__).resolve().parents[1])
    except subprocess.TimeoutExpired:
        raise DevChainError(f"deploying took over {DEPLOY_TIMEOUT_S:.0f}s",
                            reason="devchain_timeout") from None
    lines = done.stdout.split()
    if done.returncode != 0 or not lines:
        raise DevChainError(f"deploying failed ({done.returncode}): {done.stderr[-1000:]}")
    return lines[-1]


def _answers(rpc_url: str) -> bool:
    try:
        return dev_rpc(rpc_url, "eth_chainId", []) is not None
    except (OSError, ValueError, DevChainError):
        return False


def dev_rpc(rpc_url: str, method: str, params: list[object]) -> object:
    """Call one JSON-RPC method (anvil's dev methods included); return its result.

    Raises:
        OSError: the chain could not be reached (``urllib.error.URLError`` included).
        ValueError: the answer was not JSON.
        DevChainError: the chain answered with an error.
    """
    data = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method,
                       "params": params}).encode()
    request = urllib.request.Request(rpc_url, data=data,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=DEV_RPC_TIMEOUT_S) as response:  # noqa: S310
        body = json.loads(response.read())
    if not isinstance(body, dict):
        raise ValueError(f"{method}: not a JSON-RPC answer")
    if "error" in body:
        raise DevChainError(f"{method}: {body['error']}")
    return body.get("result")


def fund(rpc_url: str, address: str, wei: int) -> None:
    """Set ``address``'s balance to ``wei`` (dev chain only)."""
    dev_rpc(rpc_url, "anvil_setBalance", [address, hex(wei)])


def advance_time(rpc_url: str, seconds: int) -> None:
    """Move the dev chain's clock forward and mine a block (dev chain only)."""
    dev_rpc(rpc_url, "evm_increaseTime", [seconds])
    dev_rpc(rpc_url, "evm_mine", [])


def main(argv: list[str] | None = None) -> None:
    """Become anvil (``exec``); a helper deploys the contract and prints the JSON line.

    anvil then serves until SIGINT/SIGTERM; its exit status is this command's.
    """
    parser = argparse.ArgumentParser(prog="python -m ledger.devchain")
    parser.add_argument("--grace-s", type=int, default=DEV_GRACE_S)
    parser.add_argument("--vest-s", type=int, default=DEV_VEST_S,
                        help="longest the contract holds a job's receipts (default %(default)s)")
    parser.add_argument("--deploy-to", metavar="RPC_URL",
                        help="only deploy the contract on this chain, print its address, exit")
    args = parser.parse_args(argv)
    if args.deploy_to:
        print(deploy(args.deploy_to, args.grace_s, args.vest_s), flush=True)
        return
    port = distro_procs.free_port()
    rpc_url = f"http://127.0.0.1:{port}"

    def announce(pid: int) -> int:
        # The short-lived helper: it alone imports web3, to deploy.
        try:
            distro_procs.wait_until(lambda: _answers(rpc_url), STARTUP_TIMEOUT_S, "anvil",
                                    interval_s=_POLL_S)
            contract = deploy(rpc_url, args.grace_s, args.vest_s)
        except (TimeoutError, LedgerError) as exc:
            print(f"dev chain failed to start: {exc}", file=sys.stderr, flush=True)
            os.kill(pid, signal.SIGTERM)
            return 1
        info = ChainInfo(rpc_url=rpc_url, chain_id=CHAIN_ID, contract=contract)
        print(json.dumps(info.__dict__), flush=True)
        return 0

    # This process becomes anvil (issue 17: a Python parent kept ~20 MB resident).
    distro_procs.exec_announced([anvil_path(), "--host", "127.0.0.1", "--port", str(port),
                                 "--chain-id", str(CHAIN_ID)], os.environ, None, announce)

if __name__ == "__main__":
    main()
