"""Helpers shared by the end-to-end tests."""

from __future__ import annotations

from pathlib import Path

from p2pnode.control import call
from p2pnode.errors import ControlError


def answers(data_dir: Path, timeout_s: float = 2.0) -> bool:
    """Whether a daemon answers on the control socket of ``data_dir`` within ``timeout_s``."""
    try:
        call(data_dir, "node.id", timeout=timeout_s)
        return True
    except ControlError:
        return False
