"""What bench/attacks.py measures and prints: sizes, one line per attack, RSS.

An attack counts as refused only when the measured outcome shows it.
"""

from __future__ import annotations

from dataclasses import dataclass

import psutil


@dataclass
class Sizes:
    """How big each attack is."""

    flood: int
    control_payloads: int
    honest: int
    rounds: int
    framing_copies: int


FULL = Sizes(flood=100_000, control_payloads=1_000, honest=6, rounds=5, framing_copies=1_000)
SMALL = Sizes(flood=3_000, control_payloads=50, honest=2, rounds=3, framing_copies=50)
ANSWER_TIMEOUT_S = 5.0
"""How long an attacked daemon may take to answer ``node.id`` and still count as alive."""


@dataclass
class Line:
    """One attack's measured figures."""

    name: str
    refused: bool
    sent: str
    measured: str
    job: str = "-"
    rep: tuple[float, float] | None = None
    rss: tuple[int, int] | None = None

    def __str__(self) -> str:
        rep = f"{self.rep[0]:+.2f} -> {self.rep[1]:+.2f}" if self.rep else "-"
        mib = 1024 * 1024
        rss = f"{self.rss[0] / mib:.0f} -> {self.rss[1] / mib:.0f} MiB" if self.rss else "-"
        verdict = "REFUSED" if self.refused else "NOT REFUSED"
        return (f"{self.name:24s} {verdict:11s} | sent: {self.sent} | refused: {self.measured}"
                f" | job: {self.job} | victim rep: {rep} | rss: {rss}")


def rss(pid: int) -> int:
    """Resident set size of process ``pid`` (0 once it is gone)."""
    try:
        return int(psutil.Process(pid).memory_info().rss)
    except psutil.NoSuchProcess:
        return 0
