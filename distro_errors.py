"""The one root of every error distro-train raises on purpose.

::

    DistroError(reason)                 root; ``reason`` is a machine-readable code
    ├── storage.errors.StorageError     the data plane (S3, presigned transfers)
    ├── training.errors.TrainingError   models, datasets, weights, aggregation
    ├── protocols.errors.ProtocolError  what a peer's bytes can cause (envelopes, seals)
    └── p2pnode.errors.NodeError        the daemon (config, identity, requests, control)

Every error that crosses a boundary (an RPC answer, a trainer's refusal, an
owner's verdict on an update) is reported by its ``reason``, never by its class
name or message text. The module sits at the top level because every package,
the lowest layers included, derives its errors from it.
"""

from __future__ import annotations


class DistroError(Exception):
    """Root of the project's errors.

    Attributes:
        reason: A short machine-readable code (``hash_mismatch``, ``bad_spec``...).
            Subclasses set it; the root's default is ``error``.
    """

    reason: str = "error"
