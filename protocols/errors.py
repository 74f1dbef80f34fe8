"""Errors of the wire protocols.

    ProtocolError                 root of everything a peer's bytes can cause here
    ├── EnvelopeError(reason)     a signed message refused: oversize, malformed,
    │                             bad_signature, wrong_sender, replay, stale, kind
    └── SealError(reason)         a sealed payload that cannot be opened by us

Every refusal carries a machine-readable ``reason`` so callers count and charge
it without matching message text.
"""

from __future__ import annotations

from distro_errors import DistroError


class ProtocolError(DistroError):
    """Root of the wire-protocol errors."""


class EnvelopeError(ProtocolError):
    """A signed control message was refused.

    Attributes:
        reason: Machine-readable code (``oversize``, ``malformed``, ``bad_signature``,
            ``wrong_sender``, ``replay``, ``stale``, ``kind``, ``bad_body``).
        sender: The claimed sender peer id (base58) when it could be read, else "".
    """

    def __init__(self, reason: str, detail: str = "", sender: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
        self.sender = sender


class SealError(ProtocolError):
    """A sealed payload could not be opened (not for us, tampered, or malformed)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
