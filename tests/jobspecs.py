"""The small job the tests and bench/scenarios.py share: logistic regression on digits.

Each user states only what it changes (``{**DIGITS_JOB, "rounds": 6}``), so a reader sees
at once how its job differs from the common one.
"""

from __future__ import annotations

from typing import Any

DIGITS_JOB: dict[str, Any] = {
    "model": "logreg",
    "dataset": "digits",
    "epochs": 3,
    "lr": 0.1,
    "batch_size": 16,
    "partition": "iid",
    "chunk_samples": 200,
    "round_deadline_s": 60.0,
}
"""Bundled data (no download), a few seconds a round on one CPU core."""
