"""The compiled market contract, checked in as ``ledger/Market.json``.

``contracts/Market.vy`` is the source; ``python -m ledger.artifact`` recompiles it
with the pinned compiler (``vyper`` from PyPI, see ``COMPILER``) and rewrites the
artifact. ``tests/ledger/test_artifact.py`` recompiles and checks that the artifact
matches, so the bytecode a daemon deploys is the bytecode of the reviewed source.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ARTIFACT = Path(__file__).with_name("Market.json")
SOURCE = Path(__file__).resolve().parents[1] / "contracts" / "Market.vy"
COMPILER = "vyper==0.4.3"


@dataclass(frozen=True)
class Artifact:
    """ABI and creation bytecode of the market contract."""

    abi: list[dict[str, Any]]
    bytecode: str
    compiler: str


def load() -> Artifact:
    """Read the checked-in artifact."""
    body = json.loads(ARTIFACT.read_text())
    return Artifact(abi=body["abi"], bytecode=body["bytecode"], compiler=body["compiler"])


def compile_source(source: Path = SOURCE) -> Artifact:
    """Compile ``source`` with the installed vyper (which must be ``COMPILER``)."""
    out = subprocess.run(
        [sys.executable, "-m", "vyper", "-f", "abi,bytecode", str(source)],
        check=True, capture_output=True, text=True,
    ).stdout.splitlines()
    return Artifact(abi=json.loads(out[0]), bytecode=out[1].strip(), compiler=COMPILER)


def save(artifact: Artifact) -> None:
    """Write ``artifact`` to ``ARTIFACT``."""
    body = {"compiler": artifact.compiler, "abi": artifact.abi, "bytecode": artifact.bytecode}
    ARTIFACT.write_text(json.dumps(body, indent=1) + "\n")


if __name__ == "__main__":
    save(compile_source())
    print(f"wrote {ARTIFACT}")
