"""Simulated separate hosts: Linux network namespaces, veth pairs, a bridge and NAT.

A :class:`Lab` builds a "WAN": one namespace holding a bridge (``10.50.0.0/24``), and
public hosts, each a namespace with one address on that bridge. :meth:`Lab.nat_host`
adds a home router (a namespace on the WAN doing nftables masquerade) with one host
behind it on a private /24, as a home network would be; ``drop_unsolicited`` makes the
router drop inbound connection attempts the way home routers do, instead of answering
them with a reset. Everything here is created with names unique to the lab and removed
by :meth:`Lab.close`, also after a failure; processes started with :meth:`Lab.argv`
must be stopped (by pid) before that.

Needs root, ``ip`` (iproute2) and ``nft`` (nftables, installed by ``make venv``). The
addresses are the lab's own (10.50.0.x, 192.168.7x.x) and never routed outside.
See ../shared/NETWORK_NOTES.md for what this kernel supports.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
from dataclasses import dataclass, field

WAN_PREFIX = "10.50.0"
"""The lab's WAN subnet (a /24); public hosts and NAT routers get addresses in it."""
TRAINER_NETWORKS = ["10.50.0.0/24"]
"""What a trainer's ``[trainer] allow_networks`` needs in the lab: the WAN subnet is
private address space, which trainers refuse by default (storage/httpio.py)."""


def unavailable_reason() -> str | None:
    """Why namespaces cannot be used here, or None when they can."""
    if sys.platform != "linux":
        return "network namespaces need Linux"
    if os.geteuid() != 0:
        return "network namespaces need root (CI runs as root)"
    if shutil.which("ip") is None:
        return "iproute2's `ip` is not installed"
    probe = "dtprobe" + secrets.token_hex(3)
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"`ip netns add` failed: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def _run(*argv: str) -> None:
    done = subprocess.run(list(argv), capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {done.stderr.strip() or done.returncode}")


@dataclass
class Lab:
    """One simulated internet; use as a context manager."""

    tag: str = field(default_factory=lambda: secrets.token_hex(3))
    namespaces: list[str] = field(default_factory=list)
    routers: dict[str, str] = field(default_factory=dict)
    """Host namespace behind NAT -> its router's namespace."""
    ports: dict[str, str] = field(default_factory=dict)
    """Namespace on the WAN -> its veth's other end, on the bridge."""
    _next_host: int = 10
    _next_lan: int = 70

    def __post_init__(self) -> None:
        self.wan = self._namespace("wan")
        self.exec(self.wan, "ip", "link", "add", "br0", "type", "bridge")
        self.exec(self.wan, "ip", "link", "set", "br0", "up")

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _namespace(self, role: str) -> str:
        name = f"dt{self.tag}-{role}"
        _run("ip", "netns", "add", name)
        self.namespaces.append(name)
        self.exec(name, "ip", "link", "set", "lo", "up")
        return name

    def exec(self, ns: str, *argv: str) -> None:
        """Run ``argv`` in namespace ``ns``; raise RuntimeError naming it if it fails."""
        _run("ip", "netns", "exec", ns, *argv)

    def argv(self, ns: str, argv: list[str]) -> list[str]:
        """``argv`` prefixed to run inside ``ns`` (``ip netns exec`` execs it: same pid)."""
        return ["ip", "netns", "exec", ns, *argv]

    def _wan_link(self, ns: str, ip: str) -> str:
        """Plug ``ns`` into the WAN bridge with ``ip``; return its interface name."""
        peer = f"p{len(self.namespaces)}"
        _run("ip", "link", "add", "wan0", "netns", ns, "type", "veth",
             "peer", "name", peer, "netns", self.wan)
        self.ports[ns] = peer
        self.exec(self.wan, "ip", "link", "set", peer, "master", "br0")
        self.exec(self.wan, "ip", "link", "set", peer, "up")
        self.exec(ns, "ip", "addr", "add", f"{ip}/24", "dev", "wan0")
        self.exec(ns, "ip", "link", "set", "wan0", "up")
        return "wan0"

    def _wan_ip(self) -> str:
        ip = f"{WAN_PREFIX}.{self._next_host}"
        self._next_host += 1
        return ip

    def public_host(self, role: str) -> tuple[str, str]:
        """A host with a public (WAN) address; returns ``(namespace, ip)``."""
        ns = self._namespace(role)
        ip = self._wan_ip()
        self._wan_link(ns, ip)
        return ns, ip

    def nat_host(self, role: str, *, drop_unsolicited: bool = True) -> tuple[str, str, str]:
        """A host behind its own masquerading router; returns ``(namespace, lan_ip, router_ip)``.

        Nothing on the WAN can open a connection to the host; the host's outbound
        connections appear to come from ``router_ip``.
        """
        router = self._namespace(f"{role}r")
        router_ip = self._wan_ip()
        wan_if = self._wan_link(router, router_ip)
        host = self._namespace(role)
        self.routers[host] = router
        lan = f"192.168.{self._next_lan}"
        self._next_lan += 1
        _run("ip", "link", "add", "lan0", "netns", router, "type", "veth",
             "peer", "name", "lan0", "netns", host)
        self.exec(router, "ip", "addr", "add", f"{lan}.1/24", "dev", "lan0")
        self.exec(router, "ip", "link", "set", "lan0", "up")
        self.exec(host, "ip", "addr", "add", f"{lan}.2/24", "dev", "lan0")
        self.exec(host, "ip", "link", "set", "lan0", "up")
        self.exec(host, "ip", "route", "add", "default", "via", f"{lan}.1")
        self.exec(router, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        if shutil.which("nft") is None:
            raise RuntimeError("nft (nftables) is missing: `make venv` installs it")
        self.exec(router, "nft", "add", "table", "ip", "nat")
        self.exec(router, "nft", "add", "chain", "ip", "nat", "post",
                  "{ type nat hook postrouting priority 100; }")
        self.exec(router, "nft", "add", "rule", "ip", "nat", "post", "oifname", wan_if,
                  "masquerade")
        if drop_unsolicited:
            self.exec(router, "nft", "add", "table", "inet", "fw")
            self.exec(router, "nft", "add", "chain", "inet", "fw", "in",
                      "{ type filter hook input priority 0; policy accept; }")
            self.exec(router, "nft", "add", "rule", "inet", "fw", "in", "iifname", wan_if,
                      "ct", "state", "new", "drop")
        return host, f"{lan}.2", router_ip

    def limit(self, ns: str, rate: str) -> None:
        """Cap ``ns``'s WAN link at ``rate`` (tc syntax, e.g. ``8mbit``) both ways.

        A token bucket (tbf) on the host's WAN interface holds its uploads, one on
        its bridge port its downloads (netem is not in this kernel:
        ../shared/NETWORK_NOTES.md).
        """
        tbf = ["root", "tbf", "rate", rate, "burst", "64kbit", "latency", "400ms"]
        self.exec(ns, "tc", "qdisc", "add", "dev", "wan0", *tbf)
        self.exec(self.wan, "tc", "qdisc", "add", "dev", self.ports[ns], *tbf)

    def can_connect(self, ns: str, ip: str, port: int, timeout_s: float = 2.0) -> bool:
        """Whether a TCP connection from ``ns`` to ``ip:port`` opens (no ping here)."""
        code = ("import socket,sys\n"
                f"socket.create_connection(({ip!r}, {port}), timeout={timeout_s})\n")
        done = subprocess.run(self.argv(ns, [sys.executable, "-c", code]),
                              capture_output=True, timeout=timeout_s + 30)
        return done.returncode == 0

    def close(self) -> None:
        """Delete every namespace of the lab (their veths go with them)."""
        for ns in reversed(self.namespaces):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        self.namespaces.clear()
