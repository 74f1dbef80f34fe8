"""Persistent Ed25519 identity: one key file per data dir, same peer id across restarts."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from libp2p.crypto.ed25519 import Ed25519PrivateKey, create_new_key_pair
from libp2p.crypto.keys import KeyPair

from p2pnode.errors import IdentityError

KEY_FILE = "identity.key"
"""File name, inside the data dir, of the raw 32-byte Ed25519 seed (mode 0600)."""


def write_atomic(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write ``data`` to ``path`` through a temp file in the same dir and a rename.

    Readers never see a partial file; the file has ``mode`` from its creation on.
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_or_create_identity(data_dir: Path) -> KeyPair:
    """Return the data dir's key pair, creating dir (0700) and key (0600) on first use.

    Raises:
        IdentityError: The key file exists but is unreadable or not a 32-byte seed,
            or the data dir is not writable.
    """
    path = data_dir / KEY_FILE
    try:
        data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        if path.exists():
            seed = path.read_bytes()
            if len(seed) != 32:
                raise IdentityError(path, f"expected 32 bytes, found {len(seed)}")
            private = Ed25519PrivateKey.from_bytes(seed)
            return KeyPair(private, private.get_public_key())
        pair = create_new_key_pair()
        write_atomic(path, pair.private_key.to_bytes()[:32])
        return pair
    except OSError as exc:
        raise IdentityError(path, str(exc)) from None
