"""Every issue-11 attack at full size, against real daemon processes (not a test).

One line per attack: what was sent, what was refused (measured: node.status counters,
the owner's job store and job status, canary request counts, replies on the control
socket), the job outcome where a job is involved, the victim's reputation at the
owner before and after where it applies, and the attacked daemon's RSS before and
after (psutil). An attack counts as refused only when the measured outcome shows it.
The last line is ``attacks_refused=N/M``.

    .venv/bin/python bench/attacks.py            # full size (100,000-envelope floods)
    .venv/bin/python bench/attacks.py --small    # quick run: small floods, short jobs
    .venv/bin/python bench/attacks.py --only gossip

The attacks live in bench/attack_network.py (gossip floods, control socket) and
bench/attack_jobs.py (lying trainers, framing, a malicious owner); the line format and
sizes in bench/attack_lines.py. Attackers are test code: tests/p2pnode/flood_attacker.py
(gossip floods), tests/job/adversary_daemon.py (lying trainers),
tests/job/framing_attacker.py (replayed and forged copies of an honest trainer's
announcement) and tests/job/malicious_owner_daemon.py (an owner whose task URLs name a
canary).
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.* are test code, not installed
from attack_jobs import framing, malicious_owner, trainer_attacks  # noqa: E402 - bench/ siblings
from attack_lines import FULL, SMALL, Line  # noqa: E402
from attack_network import control_attacks, gossip_flood  # noqa: E402
from localrun import run_each  # noqa: E402


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _errored(name: str, exc: Exception) -> list[Line]:
    return [Line(name, False, "-", f"error: {type(exc).__name__}: {exc}")]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="quick sizes (see SMALL)")
    parser.add_argument("--only", default=None, help="run only attack groups whose name has this")
    args = parser.parse_args()
    sizes = SMALL if args.small else FULL
    signal.signal(signal.SIGTERM, _interrupt)  # unwind, so every run stops its processes
    work = Path(tempfile.mkdtemp(prefix="attacks-"))
    print(f"sizes: {sizes}; work dir {work}", flush=True)
    groups: list[tuple[str, Callable[[], list[Line]]]] = [
        ("gossip/future-flood", lambda: [gossip_flood(work, "future", sizes.flood, True)]),
        ("gossip/junk-flood", lambda: [gossip_flood(work, "junk", sizes.flood, False)]),
        ("control", lambda: control_attacks(work, sizes.control_payloads)),
        ("owner/urls-to-canary", lambda: [malicious_owner(work)]),
        ("framing", lambda: [framing(sizes)]),
        ("trainer", lambda: trainer_attacks(sizes)),
    ]
    results: list[Line] = []
    for _, lines, seconds in run_each(groups, args.only, _errored):
        for ln in lines:
            print(f"{ln} | {seconds:.0f}s", flush=True)
        results += lines
    refused = sum(ln.refused for ln in results)
    print(f"attacks_refused={refused}/{len(results)}")
    return 0 if refused == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
