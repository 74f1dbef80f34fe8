"""Who may use the dashboard's API: the bearer token, and the Host and Origin checks.

Pure functions and the token file; nothing here does I/O on a socket.

- The token is 32 random bytes (URL-safe base64) in ``D/web.token``, mode 0600,
  created on the daemon's first start with ``[web] enabled``. Whoever can read that
  file is the daemon's user already.
- The Host header must name this server (loopback names, the bound address, or
  ``web.allowed_hosts``): a page on another domain that resolves to 127.0.0.1 (DNS
  rebinding) is refused before it could try a token.
- An Origin header, when the browser sends one, must be this server's own origin. No
  CORS header is ever sent, so another site's script cannot read any answer either.
"""

from __future__ import annotations

import hmac
import secrets
from pathlib import Path

from p2pnode.identity import write_atomic

TOKEN_NAME = "web.token"
ADDRESS_NAME = "web.json"
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")


def token_path(data_dir: Path) -> Path:
    """The token file of ``data_dir``."""
    return data_dir / TOKEN_NAME


def load_or_create_token(data_dir: Path) -> str:
    """Return the token in ``D/web.token``, creating it (mode 0600) if absent or empty."""
    path = token_path(data_dir)
    try:
        token = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        token = ""
    if not token:
        token = secrets.token_urlsafe(32)
        data_dir.mkdir(parents=True, exist_ok=True)
        write_atomic(path, token.encode() + b"\n", mode=0o600)
    return token


def bearer_ok(header: str | None, token: str) -> bool:
    """Whether an ``Authorization`` header value is ``Bearer <token>`` (constant time)."""
    if not header:
        return False
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(value.strip().encode(), token.encode())


def allowed_hosts(bound_host: str, port: int, extra: list[str]) -> frozenset[str]:
    """The ``Host`` header values this server answers to (lower case).

    Loopback names and the bound address with ``port``; each of ``extra`` as written and
    with ``port`` (a reverse proxy may send its own name without a port).
    """
    names = set(LOOPBACK_NAMES)
    if bound_host not in ("0.0.0.0", "::"):
        names.add(f"[{bound_host}]" if ":" in bound_host else bound_host.lower())
    extras = {h.strip().lower() for h in extra}
    return frozenset({f"{n}:{port}" for n in names | extras} | extras)


def host_ok(host: str | None, allowed: frozenset[str]) -> bool:
    """Whether the request's ``Host`` header names this server."""
    return host is not None and host.strip().lower() in allowed


def origin_ok(origin: str | None, host: str, scheme: str) -> bool:
    """Whether an ``Origin`` header is absent or this server's own ``scheme://host``."""
    if origin is None:
        return True
    return origin.strip().lower() == f"{scheme}://{host.strip().lower()}"
