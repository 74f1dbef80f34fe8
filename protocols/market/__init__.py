"""The market: price terms, asks, the clearing price, receipts and their settlement.

- ``terms.py``: a job's ``[price]`` table, a trainer's ``[market]`` ask rule, the
  uniform clearing price and a round's payments (pure).
- ``settle.py``: the owner's side on the ledger: deposit, sign receipts, commit the
  round log, forfeit caught cheaters, end the job, refund.
- ``earnings.py``: the trainer's side: its receipts book, and redeeming them once
  they have vested.
"""
