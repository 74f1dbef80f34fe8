"""Errors of the wire protocols.

    ProtocolError                 root of everything a peer's bytes can cause here
    ├── EnvelopeError(reason)     a signed message refused: oversize, malformed,
    │                             key_type, wrong_sender, kind, stale, replay,
    │                             bad_signature, bad_body
    └── SealError(reason)         a sealed payload that cannot be opened by us

Every refusal carries a machine-readable ``reason`` so callers count and charge
it without matching message text.

Who is to blame: ``EnvelopeError.sender`` names a peer only when that peer's own
signature over the message verified (today only ``bad_body``, which includes a
decoder's range checks). Every other refusal leaves it "": a public key costs
nothing to copy, so a bad signature, a wrong kind or a replay of a genuine message
proves nothing about the peer whose key it carries. Callers charge reputation on
``exc.sender`` only, and only when it is set.
"""

from __future__ import annotations

from distro_errors import DistroError


class ProtocolError(DistroError):
    """Root of the wire-protocol errors."""


class EnvelopeError(ProtocolError):
    """A signed control message was refused.

    Attributes:
        reason: Machine-readable code (``oversize``, ``malformed``, ``key_type`` (not
            Ed25519), ``wrong_sender``, ``kind``, ``stale`` (outside the time window
            or below the replay floor), ``replay``, ``bad_signature``, ``bad_body``).
        sender: The signer's peer id (base58), set only after its signature verified
            (see the module docstring); "" for every refusal before that.
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
