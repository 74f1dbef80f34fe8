"""The global model as a delta against the one before (docs/training.md).

When a round closes the owner stores the new model as before, and beside it, where
it is smaller, the lossless delta from the previous global model
(``training.modeldelta``), encrypted like the model under the model's own key. A
task names both: a trainer that still holds the previous model fetches the delta,
any other the whole model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from protocols.job import compute
from protocols.job.objects import JobKey
from storage.store import DEFAULT_CONTENT_TYPE


@dataclass(frozen=True)
class ModelDelta:
    """A stored delta to the current global model.

    Attributes:
        key: Its object key.
        sha256: The stored object's sha256 (what a downloader checks).
        size: The stored object's size.
        base_sha256: The model it applies to (the previous global model).
    """

    key: str
    sha256: str
    size: int
    base_sha256: str


def store_delta(
    job_key: JobKey | None, store: Any, model_key: str, round_no: int,
    base: bytes, model: bytes, sha: str,
) -> ModelDelta | None:
    """Store ``model``'s delta from ``base`` beside the model at ``model_key`` (blocking).

    Returns:
        The stored delta, or None where it would not be smaller than the model.
    """
    # numpy comes with the train/own extras; a base daemon imports this module but
    # never builds or applies a delta.
    from training import modeldelta

    delta = modeldelta.encode(base, model)
    if delta is None or len(delta) >= len(model):
        return None
    stored = job_key.seal_model_delta(round_no, delta, sha) if job_key else delta
    key = f"{model_key.removesuffix('.safetensors')}.delta"
    store.put_bytes(key, stored, DEFAULT_CONTENT_TYPE)
    return ModelDelta(key, compute.sha256(stored), len(stored), compute.sha256(base))
