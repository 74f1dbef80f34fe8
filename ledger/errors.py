"""Errors raised by the settlement layer.

::

    LedgerError                 reason, detail
    ├── LedgerConfigError       a bad ``[ledger]`` value or wallet key source
    ├── ChainUnavailable        the JSON-RPC endpoint did not answer
    ├── TxRefused               the contract reverted (``detail`` holds the revert reason)
    └── DevChainError           the local development chain did not start
"""

from __future__ import annotations

from distro_errors import DistroError


class LedgerError(DistroError):
    """Root of ledger errors.

    Attributes:
        reason: machine-readable code.
        detail: human-readable context.
    """

    reason = "ledger_error"

    def __init__(self, detail: str, *, reason: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        if reason is not None:
            self.reason = reason


class LedgerConfigError(LedgerError):
    """A bad ``[ledger]`` or wallet setting."""

    reason = "bad_ledger_config"


class ChainUnavailable(LedgerError):
    """The JSON-RPC endpoint could not be reached or answered garbage."""

    reason = "chain_unavailable"


class TxRefused(LedgerError):
    """The contract refused a transaction (a revert) or the transaction failed."""

    reason = "tx_refused"


class DevChainError(LedgerError):
    """The local development chain did not start."""

    reason = "devchain_failed"
