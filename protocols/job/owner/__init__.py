"""The owner role, as named parts with one job each.

- ``prepare``: load, split and store a job's data (``prepare_job``);
- ``recruit``: announce jobs, take offers, fill the pool (``Recruiter``);
- ``round``: run one round against the pure round machine (``RoundRunner``);
- ``close``: aggregate, evaluate, record and publish a round (``RoundCloser``);
- ``reputation``: the book of scores, charged on signed evidence (``Reputation``);
- ``owner``: the control API and each job's loop (``Owner``), composing the above.
"""

from protocols.job.owner.config import OwnerConfig
from protocols.job.owner.owner import Owner

__all__ = ["Owner", "OwnerConfig"]
