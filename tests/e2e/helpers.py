"""Helpers shared by the end-to-end tests."""

from __future__ import annotations

from pathlib import Path

from p2pnode.control import call
from p2pnode.errors import ControlError


def answers(data_dir: Path) -> bool:
    """Whether a daemon answers on the control socket of ``data_dir``."""
    try:
        call(data_dir, "node.id", timeout=2)
        return True
    except ControlError:
        return False
