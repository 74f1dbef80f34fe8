"""Wire the market in: the wallet, the ``[ledger]`` and ``[market]`` tables, ``market.*`` routes.

Every daemon has a wallet (``D/wallet.key``, mode 0600, or the key file or variable
``[ledger]`` names). With a ``[ledger]`` table the owner role can run paid jobs
and the trainer role offers for them; without one, both deal in unpaid jobs only.
web3 is imported only when a ledger is configured or a route needs the chain.

Routes: ``market.wallet`` (address, balance), ``market.earnings`` (receipts pending
and redeemed, per job), ``market.redeem`` (redeem pending receipts, batched),
``market.refund`` (an owner takes back a job's unpaid rest after the grace period),
``market.lineage`` (a job's model versions from the ledger, optionally verified).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

import distro_schema
from distro_errors import DistroError
from p2pnode.errors import ConfigError
from p2pnode.rpc import InvalidParams, Routes, RpcError

if TYPE_CHECKING:
    from ledger.client import Market
    from ledger.config import LedgerSettings
    from ledger.wallet import Wallet
    from protocols.job.owner import Owner
    from protocols.market.earnings import TrainerMarket
    from protocols.market.settle import Settlement

log = logging.getLogger("distro_train.market")
LEDGER_ERROR = -32010
"""JSON-RPC application error: the ledger refused or could not be reached (data: reason)."""


class MarketParts:
    """The daemon's wallet and, with a ledger, the owner's and trainer's market sides."""

    def __init__(self, data_dir: Path, extra: Mapping[str, Mapping[str, Any]]) -> None:
        from ledger.config import LedgerSettings
        from protocols.market.terms import AskRule

        self.data_dir = data_dir
        self.settings: LedgerSettings = distro_schema.load(
            LedgerSettings, extra.get("ledger", {}), error=ConfigError, prefix="ledger")
        self.rule = distro_schema.load(AskRule, extra.get("market", {}), error=ConfigError,
                                       prefix="market")
        self.settlement: Settlement | None = None
        self.trainer: TrainerMarket | None = None
        self.client: Market | None = None
        self._wallet: Wallet | None = None
        if self.settings.enabled:
            self._connect()

    @property
    def wallet(self) -> Wallet:
        """The daemon's wallet, loaded (or created) on first use."""
        if self._wallet is None:
            from ledger import wallet
            from ledger.errors import LedgerConfigError

            try:
                self._wallet = wallet.load(self.data_dir, key_file=self.settings.key_file,
                                           key_env=self.settings.key_env)
            except LedgerConfigError as exc:
                raise ConfigError("ledger.key_file", exc.detail) from None
        return self._wallet

    def _connect(self) -> None:
        from ledger.client import Market
        from ledger.errors import LedgerError
        from protocols.market.earnings import TrainerMarket
        from protocols.market.settle import Settlement

        s = self.settings
        if not s.contract or not s.chain_id:
            raise ConfigError("ledger.contract", "a [ledger] needs rpc_url, chain_id and contract")
        try:
            self.client = Market(s.rpc_url, s.contract, self.wallet.key,
                                 rpc_timeout_s=s.rpc_timeout_s, tx_timeout_s=s.tx_timeout_s)
        except ValueError as exc:
            raise ConfigError("ledger.contract", f"not an address: {exc}") from None
        try:
            actual = self.client.chain_id
        except LedgerError as exc:
            log.warning("ledger %s unreachable at start: %s", s.rpc_url, exc.detail)
        else:
            if actual != s.chain_id:
                raise ConfigError("ledger.chain_id", f"{s.rpc_url} is chain {actual}")
        self.settlement = Settlement(self.client, self.wallet, s.chain_id, self.data_dir,
                                     commit_rounds=s.commit_rounds)
        self.trainer = TrainerMarket(self.rule, self.wallet, s, self.client, self.data_dir)

    def wallet_info(self) -> dict[str, Any]:
        """Address and, with a ledger, balance and where it is (blocking)."""
        out: dict[str, Any] = {"address": self.wallet.address, "ledger": None}
        if self.client is not None:
            out["ledger"] = {"rpc_url": self.settings.rpc_url, "chain_id": self.settings.chain_id,
                             "contract": self.client.address}
            out["balance_wei"] = str(self.client.balance(self.wallet.address))
        return out

    def refund(self, job_id: str) -> dict[str, Any]:
        """Take back ``job_id``'s unpaid rest (blocking)."""
        if self.client is None:
            raise RpcError(LEDGER_ERROR, "no [ledger] configured", {"reason": "no_ledger"})
        before = self.client.job(job_id)
        if before.ended_at == 0 and before.owner == self.wallet.address:
            # Not ended yet (the owner stopped before it could): end it now; the
            # grace period starts, and a later refund call takes the rest. A
            # cheater's forfeit goes first: the end vests every receipt.
            due = self.settlement.land_forfeits(job_id) if self.settlement else []
            if due:
                raise RpcError(LEDGER_ERROR, f"forfeits of {due} not on the ledger yet; "
                               "the job stays open", {"reason": "forfeit_due"})
            tx = self.client.end_job(job_id)
            ended = self.client.job(job_id).ended_at
            return {"ended_now": True, "refund_after": ended + self.client.grace_s(),
                    "tx": tx.tx_hash, "gas_used": tx.gas_used}
        tx = self.client.refund(job_id)
        return {"refunded_wei": str(before.deposit - before.paid), "paid_wei": str(before.paid),
                "deposit_wei": str(before.deposit), "tx": tx.tx_hash, "gas_used": tx.gas_used}


def add_routes(routes: Routes, parts: MarketParts, owner: Owner) -> None:
    """Register the ``market.*`` routes (``owner``: for ``market.lineage``)."""

    async def blocking(fn: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
        try:
            return await trio.to_thread.run_sync(fn, *args)
        except DistroError as exc:
            raise RpcError(LEDGER_ERROR, str(exc), {"reason": exc.reason}) from None

    def job_of(params: dict[str, Any]) -> str | None:
        job_id = params.get("job_id")
        if job_id is not None and not (0 < len(job_id) <= 64 and job_id.isalnum()):
            raise InvalidParams("job_id", "must be 1-64 letters and digits")
        return job_id

    def trainer() -> TrainerMarket:
        if parts.trainer is None:
            raise RpcError(LEDGER_ERROR, "no [ledger] configured", {"reason": "no_ledger"})
        return parts.trainer

    async def wallet(params: dict[str, Any]) -> dict[str, Any]:
        return await blocking(parts.wallet_info)

    async def earnings(params: dict[str, Any]) -> dict[str, Any]:
        return await blocking(trainer().earnings, job_of(params))

    async def redeem(params: dict[str, Any]) -> dict[str, Any]:
        return await blocking(trainer().redeem, job_of(params))

    async def refund(params: dict[str, Any]) -> dict[str, Any]:
        job_id = job_of(params)
        assert job_id is not None
        return await blocking(parts.refund, job_id)

    async def lineage(params: dict[str, Any]) -> dict[str, Any]:
        from protocols.job.owner.lineage import lineage as rebuild

        job_id = job_of(params)
        assert job_id is not None
        try:
            return await rebuild(owner.closer.env, job_id, verify=bool(params.get("verify")))
        except DistroError as exc:
            raise RpcError(LEDGER_ERROR, str(exc), {"reason": exc.reason}) from None

    maybe_job = {"job_id": str}
    routes.add("market.wallet", wallet, doc="This daemon's wallet address and balance.")
    routes.add("market.earnings", earnings, optional=maybe_job,
               doc="Receipts pending (vesting), redeemed and forfeited, per job (wei).")
    routes.add("market.redeem", redeem, optional=maybe_job,
               doc="Redeem every vested, unforfeited receipt (of one job), batched.")
    routes.add("market.refund", refund, required=maybe_job,
               doc="Owner: take back a job's unpaid budget after its end + grace period.")
    routes.add("market.lineage", lineage, required=maybe_job, optional={"verify": bool},
               doc="Owner: a job's model versions from the ledger's round log; verify=true "
                   "checks hashes, parents, Merkle roots and the stored models.")
