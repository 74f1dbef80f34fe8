"""The checked-in artifact is what the pinned compiler makes of contracts/Market.vy."""

from __future__ import annotations

import importlib.metadata

from ledger import artifact


def test_artifact_matches_recompiled_source() -> None:
    assert f"vyper=={importlib.metadata.version('vyper')}" == artifact.COMPILER
    checked_in = artifact.load()
    fresh = artifact.compile_source()
    assert checked_in.compiler == artifact.COMPILER
    assert fresh.abi == checked_in.abi
    assert fresh.bytecode == checked_in.bytecode
