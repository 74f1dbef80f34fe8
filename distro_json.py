"""JSON from outside, parsed with a bounded nesting depth.

``json.loads`` guards its recursion with Python's recursion limit only, and some
libraries raise that limit at import (py_ecc, pulled in by web3, sets 100,000): a
deeply nested line then overflows the C stack and the process dies with SIGSEGV
instead of raising ``RecursionError``. Every decoder of untrusted JSON (the control
socket, the web API, peers' model parameters, safetensors headers, manifests, NAT
probes) therefore measures the nesting first, on the raw text, with no recursion.
"""

from __future__ import annotations

import json
import re
from typing import Any

MAX_DEPTH = 64
"""Deepest nesting any distro-train JSON document may have."""

_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKET = re.compile(rb"[\[\]{}]")


class TooDeep(ValueError):
    """A JSON document nested deeper than allowed (raised before parsing it)."""


def depth(data: bytes | bytearray | str, limit: int = MAX_DEPTH) -> int:
    """The nesting depth of JSON text, counted up to ``limit + 1`` (no recursion)."""
    raw = data.encode() if isinstance(data, str) else bytes(data)
    level = deepest = 0
    for m in _BRACKET.finditer(_STRING.sub(b'""', raw)):
        if m.group() in (b"[", b"{"):
            level += 1
            if level > deepest:
                deepest = level
                if deepest > limit:
                    break
        else:
            level -= 1
    return deepest


def loads(data: bytes | bytearray | str, *, max_depth: int = MAX_DEPTH) -> Any:
    """``json.loads`` for untrusted text.

    Raises:
        TooDeep: nested deeper than ``max_depth`` (a ``ValueError``).
        json.JSONDecodeError: not JSON (a ``ValueError``).
        UnicodeDecodeError: bytes that are not UTF-8 (a ``ValueError``).
    """
    if depth(data, max_depth) > max_depth:
        raise TooDeep(f"JSON nested deeper than {max_depth}")
    return json.loads(data)
