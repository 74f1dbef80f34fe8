"""Errors of the daemon.

    NodeError                          root of everything the daemon raises on purpose
    ├── ConfigError(field, reason)     a config value (file, env or flag) is invalid
    ├── IdentityError(path, reason)    the key file cannot be read or written
    ├── RequestError(peer, protocol,   a request/response exchange with a peer failed
    │                reason)           (timeout, too_large, refused, closed, dial)
    └── ControlError(code, message)    a JSON-RPC call over the control socket failed;
        └── DaemonNotRunning(path)     no daemon answers at that data dir

Every error carries fields so callers never match on message text.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from distro_errors import DistroError


class NodeError(DistroError):
    """Root of the daemon's errors."""


class ConfigError(NodeError):
    """An invalid configuration value.

    Attributes:
        field: Dotted name of the bad field, e.g. ``presence.interval_s``.
        reason: Human-readable reason.
    """

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"config {field}: {reason}")
        self.field = field
        self.reason = reason


class IdentityError(NodeError):
    """The identity key file is unreadable, malformed or unwritable."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"identity {path}: {reason}")
        self.path = path
        self.reason = reason


class RequestError(NodeError):
    """A request to a peer failed.

    Attributes:
        peer: Base58 peer id.
        protocol: Protocol id of the stream.
        reason: ``timeout``, ``too_large``, ``dial``, ``closed`` or ``refused``.
    """

    def __init__(self, peer: str, protocol: str, reason: str, detail: str = "") -> None:
        super().__init__(f"request {protocol} to {peer}: {reason} {detail}".rstrip())
        self.peer = peer
        self.protocol = protocol
        self.reason = reason
        self.detail = detail


class ControlError(NodeError):
    """A control-socket call returned a JSON-RPC error (or could not be made).

    Attributes:
        code: JSON-RPC error code (0 for transport failures).
        message: The error message from the daemon.
        data: The error's optional ``data`` member.
    """

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(f"{message} ({code})" if code else message)
        self.code = code
        self.message = message
        self.data = data


class DaemonNotRunning(ControlError):
    """No daemon listens on the control socket at ``path``."""

    def __init__(self, path: Path) -> None:
        super().__init__(0, f"no daemon running at {path.parent} (no answer on {path.name})")
        self.path = path
