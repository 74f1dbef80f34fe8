"""The settlement layer: one EVM contract reached over Ethereum JSON-RPC (web3 lives here only).

- ``errors.py``: ``LedgerError`` and its reasons.
- ``artifact.py``: the checked-in compiled contract (``Market.json``) and its source.
- ``config.py``: the ``[ledger]`` table.
- ``wallet.py``: the daemon's secp256k1 key and its binding to the libp2p identity.
- ``receipts.py``: EIP-712 receipts and Merkle roots/proofs of update hashes (pure).
- ``client.py``: ``Market``: deploy, deposit, redeem, forfeit, end, refund, commit, read
  the log.
- ``devchain.py``: the local development chain (anvil from npm) for the demo and tests.
"""
