"""Network benchmark: a bootstrap node and N daemons on loopback (not a test).

    .venv/bin/python bench/network.py [--daemons 20] [--messages 200] [--rate 10] [--compare]

Runs with the daemon's default config unless ``--test-config``. Prints: seconds until
every daemon is directly connected to min(N - 1, ``connections.low_water``) others
through DHT discovery, and until every daemon lists every other through presence; gossip
delivery ratio and p50/p95 latency over the messages (random senders, ``--rate`` per
second in all); the CPU each message costs (all daemons' CPU while sending, less their
idle CPU measured just before and just after, per message and per delivery);
connections per daemon and CPU per daemon while sending; each daemon's heartbeat and
mesh sizes; idle RSS
per daemon; start-to-ready time. ``--compare`` runs it all twice, first with py-libp2p's
own hot path (``DISTRO_TRAIN_STOCK_LIBP2P=1``: p2pnode/hotpath.py not applied), and
prints the ratio of the CPU per message. With ``--test-config`` nodes use the test config of
tests/p2pnode/harness.py except the presence period (``--presence-interval``, default
2 s, silence timeout 5x that). All processes share this
machine's cores, so the figures include that contention; the load is printed with them.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psutil

# tests/ is not an installed package: its harness is imported from the checkout.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.p2pnode import harness
from tests.p2pnode.harness import Network, NodeProc, open_network

DEFAULT_CONFIG = """\
[control]
debug_routes = true
"""
"""The daemon's defaults; the debug routes publish and record the bench's messages."""


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} CPUs"


def connected_enough(nodes: list[NodeProc]) -> bool:
    """Every daemon holds at least min(N - 1, ``connections.low_water``) connections."""
    for n in nodes:
        status = n.rpc("node.status")
        low = status.get("connections_managed", {}).get("low_water", len(nodes))
        if status["connected"] < min(len(nodes) - 1, low):
            return False
    return True


def sees_all(nodes: list[NodeProc]) -> bool:
    ids = {n.peer_id for n in nodes}
    for n in nodes:
        if n.peer_ids() != ids - {n.peer_id}:
            return False
    return True


def wait(pred, timeout: float) -> float | None:  # type: ignore[no-untyped-def]
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if pred():
            return time.monotonic() - start
        time.sleep(0.5)
    return None


def discovery(net: Network) -> None:
    took = wait(lambda: connected_enough(net.daemons), 120)
    when = f"after {took:.2f} s" if took is not None else "NOT within 120 s"
    print(f"DHT discovery: every daemon directly connected to min({len(net.daemons) - 1}, "
          f"connections.low_water) others {when} (from the moment the last daemon was "
          "ready)")
    took = wait(lambda: sees_all(net.daemons), 120)
    when = f"after {took:.2f} s" if took is not None else "NOT within 120 s"
    print(f"discovery: every daemon sees the other {len(net.daemons) - 1} {when} "
          "(from the moment the last daemon was ready)")


def cpu_seconds(nodes: list[NodeProc]) -> float:
    """User + system CPU seconds the node processes have used so far."""
    total = 0.0
    for n in nodes:
        try:
            times = psutil.Process(n.rpc("node.status")["pid"]).cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


def idle_cpu(net: Network, seconds: float) -> float:
    """All daemons' CPU seconds per second while nothing is published by the bench."""
    before, t0 = cpu_seconds(net.daemons), time.monotonic()
    time.sleep(seconds)  # a measurement window, not a wait for a condition
    return (cpu_seconds(net.daemons) - before) / (time.monotonic() - t0)


def gossip(net: Network, messages: int, rate: float) -> tuple[float, float, float]:
    """Publish ``messages``; print and return (delivery ratio, p95 s, CPU ms per message)."""
    for d in net.daemons:
        d.rpc("debug.subscribe", {"topic": "bench"})
    # Warm the mesh: one message, until it reaches everyone.
    warm = net.daemons[0]
    wait(lambda: (warm.rpc("debug.publish", {"topic": "bench", "data": "warm"}) and
                  all(d.rpc("debug.messages", {"topic": "bench"}) for d in net.daemons[1:])), 30)
    # Idle CPU drifts (discovery backs off after the network settles): measured for
    # half the sending time before and half after, and averaged.
    idle_before = idle_cpu(net, (messages / rate + 3.0) / 2)
    sent: dict[str, tuple[str, float]] = {}
    rng = random.Random(1)
    cpu_before = cpu_seconds(net.daemons)
    start = time.monotonic()
    for i in range(messages):
        sender = rng.choice(net.daemons)
        tag = f"m{i}"
        res = sender.rpc("debug.publish", {"topic": "bench", "data": tag})
        sent[tag] = (sender.peer_id, res["published_at"])
        time.sleep(max(0.0, start + (i + 1) / rate - time.monotonic()))
    time.sleep(3.0)  # let the tail of the stream arrive before counting
    cpu = cpu_seconds(net.daemons) - cpu_before
    busy = time.monotonic() - start
    idle_rate = (idle_before + idle_cpu(net, busy / 2)) / 2
    latencies, per_daemon = _deliveries(net, sent)
    delivered = sum(per_daemon)
    expected = messages * (len(net.daemons) - 1)
    if not latencies:
        print(f"gossip: 0/{expected} deliveries of {messages} messages at {rate:g}/s")
        return 0.0, float("inf"), float("nan")
    print(f"gossip: {delivered}/{expected} deliveries ({delivered / expected:.1%}) of "
          f"{messages} messages at {rate:g}/s; latency p50 {pct(latencies, 50):.1f} ms, "
          f"p95 {pct(latencies, 95):.1f} ms, max {max(latencies):.1f} ms")
    print(f"gossip per daemon: fewest {min(per_daemon)}, most {max(per_daemon)} of the "
          f"{messages} messages (own messages included in neither)")
    print(f"gossip CPU: {cpu:.1f} s of CPU in all daemons over the {busy:.1f} s of sending "
          f"(presence and discovery included): {cpu / max(1, delivered) * 1000:.2f} ms per "
          f"delivery")
    extra = max(0.0, cpu - idle_rate * busy)
    per_message = extra / messages * 1000
    print(f"CPU per message: idle {idle_rate / len(net.daemons):.1%} of a core per daemon "
          f"(presence, discovery, heartbeats); sending added {extra:.1f} s: "
          f"{per_message:.1f} ms per message across all {len(net.daemons)} daemons, "
          f"{extra / max(1, delivered) * 1000:.2f} ms per delivery")
    _print_connections(net, cpu, busy)
    return delivered / expected, pct(latencies, 95) / 1000, per_message


def _deliveries(net: Network, sent: dict[str, tuple[str, float]]) -> tuple[list[float], list[int]]:
    """Every delivery's latency (ms) and each daemon's count of ``sent`` (tag: sender, time).

    A daemon's own messages count in neither.
    """
    latencies: list[float] = []
    per_daemon: list[int] = []
    for d in net.daemons:
        got = 0
        for m in d.rpc("debug.messages", {"topic": "bench"}):
            if m["data"] in sent and sent[m["data"]][0] != d.peer_id:
                got += 1
                latencies.append((m["received_at"] - sent[m["data"]][1]) * 1000)
        per_daemon.append(got)
    return latencies, per_daemon


def _print_connections(net: Network, cpu: float, busy: float) -> None:
    """Print the daemons' connections, ``cpu`` s over ``busy`` s of sending, the mesh."""
    statuses = [d.rpc("node.status") for d in net.daemons]
    gs = [st.get("gossip", {}) for st in statuses]
    peers = [st["connected"] for st in statuses]
    conns = [st.get("connections", st["connected"]) for st in statuses]
    print(f"connections per daemon: peers connected min {min(peers)}, mean "
          f"{statistics.mean(peers):.1f}, max {max(peers)}; open connections min "
          f"{min(conns)}, mean {statistics.mean(conns):.1f}, max {max(conns)}; CPU while "
          f"sending {cpu / busy / len(net.daemons):.1%} of a core per daemon, "
          f"{cpu / busy:.2f} cores in all; trimmed so far "
          f"{sum(st.get('connections_managed', {}).get('trimmed', 0) for st in statuses)}")
    meshes = [next((n for t, n in g.get("mesh", {}).items() if t.endswith("/bench")), 0)
              for g in gs]
    beats = sorted({g.get("heartbeat_s") for g in gs}, key=str)
    print(f"gossipsub: heartbeat {beats} s; 'bench' mesh size min {min(meshes)}, "
          f"mean {statistics.mean(meshes):.1f}, max {max(meshes)}")
    guard = {k: sum(st.get(f"gossip_{k}", 0) for st in statuses)
             for k in ("rate_limited", "bans", "ignored")}
    print(f"gossip guard, all daemons: rate-limited {guard['rate_limited']}, bans "
          f"{guard['bans']}, dropped as dated outside the window (not charged) {guard['ignored']}")


def idle(net: Network) -> None:
    time.sleep(5.0)  # idle period before sampling memory
    statuses = [d.rpc("node.status") for d in net.daemons]
    rss = [st["rss_bytes"] / 2**20 for st in statuses]
    print(f"idle RSS per daemon: mean {statistics.mean(rss):.1f} MiB, "
          f"max {max(rss):.1f} MiB, min {min(rss):.1f} MiB")
    peers = [st["connected"] for st in statuses]
    trimmed = sum(st.get("connections_managed", {}).get("trimmed", 0) for st in statuses)
    print(f"at the end: peers connected per daemon min {min(peers)}, mean "
          f"{statistics.mean(peers):.1f}, max {max(peers)}; trimmed so far {trimmed}")


def start_to_ready(net: Network, launch: dict[str, float]) -> None:
    inside = [d.rpc("node.status")["ready_after_s"] for d in net.daemons]
    print(f"start-to-ready inside the process (identity -> listening, pubsub, DHT, bootstrap "
          f"dialled, socket up): p50 {pct(inside, 50):.2f} s, max {max(inside):.2f} s")
    walls = [launch[d.peer_id] for d in net.daemons if d.peer_id in launch]
    if walls:
        print(f"process launch -> ready with {len(walls)} launched at once (import "
              f"contention): p50 {pct(walls, 50):.2f} s, max {max(walls):.2f} s")
    t0 = time.monotonic()
    one = net.add_daemon("one-more")
    took = time.monotonic() - t0
    print(f"one more daemon, launched alone on the settled network: process launch -> "
          f"ready {took:.2f} s (inside the process {one.rpc('node.status')['ready_after_s']:.2f}"
          f" s)")
    seen = wait(lambda: sees_all(net.daemons), 60)
    print(f"  ... and seen by all / sees all {len(net.daemons) - 1} after "
          f"{seen if seen is None else round(seen, 2)} s more")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--daemons", type=int, default=20)
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--rate", type=float, default=10.0, help="messages per second, total")
    parser.add_argument("--test-config", action="store_true",
                        help="the tests' short timeouts and periods instead of the daemon's "
                             "defaults (presence every --presence-interval s)")
    parser.add_argument("--presence-interval", type=float, default=2.0)
    parser.add_argument("--extra-config", default="",
                        help="TOML appended to every daemon's config (experiments, e.g. "
                             "'[connections]\\nhigh_water = 12'); printed when given")
    parser.add_argument("--compare", action="store_true",
                        help="run twice, py-libp2p's stock hot path first, and print the "
                             "ratio of CPU per message")
    args = parser.parse_args()
    config = DEFAULT_CONFIG
    if args.test_config:
        config = harness.TEST_CONFIG.replace(
            "interval_s = 1.0\nsilence_timeout_s = 6.0",
            f"interval_s = {args.presence_interval}\n"
            f"silence_timeout_s = {5 * args.presence_interval}")
        print(f"test config, presence every {args.presence_interval} s")
    else:
        print("daemon default config (presence period adapts to the network size)")
    if args.extra_config:
        extra = args.extra_config.replace("\\n", "\n")
        config += "\n" + extra + "\n"
        print(f"NOT the default config, with: {extra!r}")
    print(f"before: {load()}")
    if not args.compare:
        measure(args.daemons, args.messages, args.rate, config)
        return
    os.environ["DISTRO_TRAIN_STOCK_LIBP2P"] = "1"
    print("--- py-libp2p's stock hot path (p2pnode/hotpath.py not applied) ---")
    stock = measure_cpu(args.daemons, args.messages, args.rate, config)
    del os.environ["DISTRO_TRAIN_STOCK_LIBP2P"]
    print("--- p2pnode/hotpath.py applied (the daemon as shipped) ---")
    ours = measure_cpu(args.daemons, args.messages, args.rate, config)
    ratio = f"{ours[2] / stock[2]:.2f}x" if stock[2] > 0 else "n/a (stock figure 0)"
    print(f"CPU per message, {args.daemons} daemons: stock {stock[2]:.1f} ms, shipped "
          f"{ours[2]:.1f} ms: {ratio}; delivered {stock[0]:.1%} -> "
          f"{ours[0]:.1%}, p95 {stock[1]:.2f} s -> {ours[1]:.2f} s (same machine, same run; "
          f"other work on it shows in the load lines)")


def measure(daemons: int, messages: int, rate: float,
            config: str = DEFAULT_CONFIG) -> tuple[float, float]:
    """Run the whole benchmark once; return gossip (delivery ratio, p95 seconds)."""
    ratio, p95, _ = measure_cpu(daemons, messages, rate, config)
    return ratio, p95


def measure_cpu(daemons: int, messages: int, rate: float,
                config: str = DEFAULT_CONFIG) -> tuple[float, float, float]:
    """Run the whole benchmark once; return gossip (delivery ratio, p95 s, CPU ms/message).

    Every node reads ``config``: the daemon's defaults unless told otherwise (bench/wan.py
    relies on that; the tests' short periods would overload 50 daemons on 2 cores).
    """
    with tempfile.TemporaryDirectory(prefix="dt-bench-") as tmp:
        t0 = time.monotonic()
        with open_network(Path(tmp), daemons, config=config) as net:
            print(f"{daemons} daemons + bootstrap ready after {time.monotonic() - t0:.2f} s")
            discovery(net)
            result = gossip(net, messages, rate)
            start_to_ready(net, {})
            idle(net)
            print(f"after: {load()}")
            return result


if __name__ == "__main__":
    main()
