"""``distro-train doctor``: check this machine's set-up, each check with a verdict and a fix.

Checks (each a function returning :class:`Check`, tested pass and fail):

- ``config``: the effective config loads (file, env, flags);
- ``data_dir``: exists (or can be created), belongs to this user, is writable and
  private (mode 0700; ``identity.key`` 0600);
- ``identity``: the key file loads (or will be created on first start);
- ``ports``: each TCP listen port (and the metrics port) is free, or held by this
  data dir's own running daemon;
- ``bootstrap``: each bootstrap address accepts a TCP connection;
- ``storage`` (owner): the configured bucket answers with these credentials, or the
  embedded server can run;
- ``torch`` (trainer): torch imports, and which device it would train on;
- ``reachability`` (daemon): what the running daemon found (public, behind NAT with
  relays, or behind NAT without; skipped when no daemon runs or it has not found out).

Verdicts: ``pass``, ``warn`` (works, but look), ``fail`` (will not work), ``skip``.
Exit 0 when nothing failed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import dataclasses
import errno
import importlib
import os
import socket
import stat
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from p2pnode.commands.common import EXIT_FAILED, JSON_HELP, add_config, add_data_dir, print_json

if TYPE_CHECKING:
    from p2pnode.config import Config

TRAIN_HINT = ("pip install 'distro-train[train]' (CPU-only: add --extra-index-url "
              "https://download.pytorch.org/whl/cpu; see README)")
OWNER_HINT = "pip install 'distro-train[owner]'"
STATUS_TIMEOUT_S = 2.0
"""How long doctor waits for the running daemon's ``node.status``."""


@dataclass
class Check:
    """One check's outcome."""

    name: str
    verdict: str  # pass | warn | fail | skip
    detail: str
    fix: str = ""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``doctor [--bootstrap] [--json] [--timeout S]``."""
    add_data_dir(parser)
    add_config(parser)
    parser.add_argument("--json", action="store_true", help=JSON_HELP)
    parser.add_argument("--bootstrap", dest="as_bootstrap", action="store_true",
                        help="check a bootstrap node's set-up (no storage or torch checks)")
    parser.add_argument("--timeout", type=float, default=3.0,
                        help="seconds per network probe (default 3)")


# ----- the checks ------------------------------------------------------------------

def check_data_dir(data_dir: Path) -> Check:
    """The data dir exists or can be created, is ours, writable and private."""
    from p2pnode.identity import KEY_FILE

    name = "data_dir"
    if not data_dir.exists():
        parent = next((p for p in data_dir.parents if p.exists()), Path("/"))
        if os.access(parent, os.W_OK | os.X_OK):
            return Check(name, "pass", f"{data_dir} does not exist yet; created (0700) on "
                         "first start", "optional: distro-train init")
        return Check(name, "fail", f"{data_dir} does not exist and {parent} is not writable",
                     f"create it: install -d -m 0700 -o $USER {data_dir}, or pick --data-dir")
    if not data_dir.is_dir():
        return Check(name, "fail", f"{data_dir} is not a directory", "pick another --data-dir")
    st = data_dir.stat()
    if st.st_uid != os.geteuid():
        return Check(name, "fail", f"{data_dir} belongs to uid {st.st_uid}, not to you "
                     f"({os.geteuid()})", f"chown -R $USER {data_dir}, or run as its owner")
    if not os.access(data_dir, os.W_OK | os.X_OK):
        return Check(name, "fail", f"{data_dir} is not writable", f"chmod u+rwx {data_dir}")
    key = data_dir / KEY_FILE
    if key.exists() and stat.S_IMODE(key.stat().st_mode) & 0o077:
        key_mode = oct(stat.S_IMODE(key.stat().st_mode))
        return Check(name, "fail", f"{key} is readable by others (mode {key_mode}): anyone "
                     "on this machine can take this peer's identity", f"chmod 600 {key}")
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        return Check(name, "warn", f"{data_dir} is open to other users (mode {oct(mode)})",
                     f"chmod 700 {data_dir}")
    return Check(name, "pass", f"{data_dir} (mode {oct(mode)})")


def check_identity(data_dir: Path) -> Check:
    """The identity key loads (without creating one)."""
    from p2pnode.identity import KEY_FILE

    path = data_dir / KEY_FILE
    if not path.exists():
        return Check("identity", "pass", f"no {path} yet; a new identity is created on "
                     "first start", "to keep a peer id across machines, restore identity.key")
    try:
        from libp2p.crypto.ed25519 import Ed25519PrivateKey
        from libp2p.peer.id import ID

        seed = path.read_bytes()
        if len(seed) != 32:
            raise ValueError(f"expected 32 bytes, found {len(seed)}")
        private = Ed25519PrivateKey.from_bytes(seed)
        peer = ID.from_pubkey(private.get_public_key())
    except (OSError, ValueError) as exc:
        return Check("identity", "fail", f"{path} does not load: {exc}",
                     f"restore identity.key from a backup, or move {path} away to start "
                     "as a new peer (new peer id)")
    return Check("identity", "pass", f"peer id {peer}")


def _tcp_target(addr: str) -> tuple[str, int] | None:
    parts = addr.split("/")
    host = port = None
    for i, part in enumerate(parts[:-1]):
        if part in ("ip4", "ip6", "dns", "dns4", "dns6"):
            host = parts[i + 1]
        elif part == "tcp":
            port = int(parts[i + 1])
    return (host, port) if host is not None and port is not None else None


def check_bootstrap(addrs: list[str], role: str, timeout: float) -> Check:
    """Each bootstrap node accepts a TCP connection."""
    name = "bootstrap"
    if not addrs:
        if role == "bootstrap":
            return Check(name, "pass", "none configured (this is a bootstrap node)")
        return Check(name, "warn", "no bootstrap nodes: this daemon meets only peers that "
                     "dial it", "set [node] bootstrap, --bootstrap or BOOTSTRAP_ADDR")
    bad = []
    for addr in addrs:
        target = _tcp_target(addr)
        if target is None:
            bad.append(f"{addr}: no TCP host and port")
            continue
        try:
            socket.create_connection(target, timeout=timeout).close()
        except OSError as exc:
            bad.append(f"{target[0]}:{target[1]}: {exc.strerror or exc}")
    if len(bad) == len(addrs):
        return Check(name, "fail", "no bootstrap node reachable: " + "; ".join(bad),
                     "check the addresses, that the nodes run, and that outbound TCP to "
                     "their ports is allowed")
    if bad:
        return Check(name, "warn", f"{len(addrs) - len(bad)}/{len(addrs)} reachable; "
                     + "; ".join(bad), "remove or fix the unreachable addresses")
    return Check(name, "pass", f"{len(addrs)}/{len(addrs)} reachable")


def _own_status(data_dir: Path) -> dict[str, Any] | None:
    """The ``node.status`` of the daemon running at ``data_dir``, or None."""
    from p2pnode.control import call
    from p2pnode.errors import ControlError

    try:
        status = call(data_dir, "node.status", {}, timeout=STATUS_TIMEOUT_S)
    except ControlError:
        return None
    return status if isinstance(status, dict) else None


def _own_daemon_runs(data_dir: Path) -> bool:
    return _own_status(data_dir) is not None


def check_ports(cfg: Config) -> Check:
    """Each TCP port to listen on is free (or held by this data dir's daemon)."""
    name = "ports"
    targets = [t for t in map(_tcp_target, cfg.node.listen) if t and t[1]]
    if cfg.metrics.enabled:
        targets.append((cfg.metrics.host, cfg.metrics.port))
    if not targets:
        return Check(name, "pass", "any free port (tcp/0)")
    if _own_daemon_runs(cfg.node.data_dir):
        return Check(name, "pass", "in use by this data dir's running daemon")
    busy = []
    for host, port in targets:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((host, port))
            except OSError as exc:
                why = "in use" if exc.errno == errno.EADDRINUSE else exc.strerror
                busy.append(f"{host}:{port} {why}")
    if busy:
        return Check(name, "fail", "; ".join(busy),
                     "stop what holds the port (ss -ltnp), or choose another with --listen / "
                     "[node] listen ([metrics] port for metrics)")
    return Check(name, "pass", ", ".join(f"{h}:{p}" for h, p in targets) + " free")


def check_storage(cfg: Config, env: Mapping[str, str], timeout: float) -> Check:
    """The owner's bucket answers with these credentials (or embedded S3 can run)."""
    name = "storage"
    table = cfg.extra.get("storage")
    if table is None and not env.get("DISTRO_TRAIN_S3_ENDPOINT"):
        try:
            importlib.import_module("nanio")
        except ImportError:
            return Check(name, "fail", "no [storage] configured and the embedded S3 server "
                         "(nanio) is not installed", f"{OWNER_HINT}, or configure [storage]")
        return Check(name, "pass", "no [storage]: an embedded S3 server runs in "
                     f"{cfg.node.data_dir / 's3'} when this daemon owns a job")
    try:
        from storage.config import StoreConfig
        from storage.s3 import S3Store

        store_cfg = StoreConfig.from_mapping(table or {}, env=env)
        store_cfg = dataclasses.replace(store_cfg, connect_timeout_s=timeout,
                                        read_timeout_s=timeout, max_attempts=1)
        store = S3Store(store_cfg)
        store.client.head_bucket(Bucket=store_cfg.bucket)
    except ImportError:
        return Check(name, "fail", "boto3 is not installed", OWNER_HINT)
    except Exception as exc:  # noqa: BLE001 - botocore raises many unrelated types
        code = getattr(exc, "response", {}).get("Error", {}).get("Code", "")
        return Check(name, "fail", f"bucket check failed: {type(exc).__name__} {code}".strip()
                     + f" ({str(exc)[:160]})", "check [storage] endpoint, bucket and the "
                     "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY this daemon runs with")
    return Check(name, "pass", f"bucket {store_cfg.bucket!r} at "
                 f"{store_cfg.endpoint or 'AWS'} answers")


def check_torch(module: str = "torch") -> Check:
    """Whether torch imports, and the device a task would use."""
    name = "torch"
    try:
        torch: Any = importlib.import_module(module)
    except Exception as exc:  # noqa: BLE001 - a broken install raises anything
        return Check(name, "fail", f"cannot import torch: {type(exc).__name__}: {exc}; this "
                     "daemon cannot train and refuses every job", TRAIN_HINT)
    version = getattr(torch, "__version__", "?")
    try:
        if torch.cuda.is_available():
            device = f"cuda ({torch.cuda.get_device_name(0)})"
        else:
            device = "cpu"
            if getattr(torch.version, "cuda", None):
                device += " (a CUDA build without a usable GPU: the CPU build is smaller)"
    except Exception as exc:  # noqa: BLE001
        return Check(name, "warn", f"torch {version} imports but its device query failed: "
                     f"{exc}", "reinstall torch for this machine (README: CPU vs CUDA)")
    return Check(name, "pass", f"torch {version}, trains on {device}")


def check_reachability(status: Mapping[str, Any] | None) -> Check:
    """Whether peers can dial this node, as its running daemon found (``node.status``).

    ``status`` is the daemon's ``node.status`` answer, or None when none runs here.
    """
    name = "reachability"
    if status is None:
        return Check(name, "skip", "no daemon runs at this data dir: reachability is "
                     "measured by a running daemon", "start it, then run doctor again")
    nat = status.get("nat") or {}
    verdict = nat.get("reachability", "unknown")
    relays = list(nat.get("relays") or [])
    if verdict == "public":
        return Check(name, "pass", "public: the bootstrap nodes dialed this node back")
    if verdict == "private" and relays:
        return Check(name, "warn", f"behind NAT: peers reach it through {len(relays)} "
                     "relay(s) on the bootstrap nodes (slower, byte-capped)",
                     "for direct connections forward the listen port on the router and "
                     "advertise the public address with --announce (docs/network.md)")
    if verdict == "private":
        return Check(name, "fail", "behind NAT and no relay reservation: owners cannot "
                     "dial this node", "check [nat] use_relays and that the bootstrap nodes "
                     "serve relays, or forward the listen port and set --announce")
    return Check(name, "skip", "not determined yet: a bootstrap node must dial back "
                 "first (every [nat] reservation_refresh_s)", "run doctor again in a minute")


# ----- the command ----------------------------------------------------------------

def run_checks(args: argparse.Namespace, env: Mapping[str, str]) -> list[Check]:
    """Every check that applies to ``args``' role, in order."""
    from p2pnode.commands.nodeconfig import data_dir_for, load_for
    from p2pnode.errors import NodeError

    role = "bootstrap" if args.as_bootstrap else "daemon"
    checks: list[Check] = []
    try:
        cfg, path = load_for(args, role, env)
    except NodeError as exc:
        data_dir = data_dir_for(args, role, env)
        return [Check("config", "fail", str(exc), "fix the named field "
                      "(distro-train schema config lists them)"),
                check_data_dir(data_dir), check_identity(data_dir)]
    checks.append(Check("config", "pass", f"loads ({path or 'defaults, no config file'})"))
    steps: list[Callable[[], Check]] = [
        lambda: check_data_dir(cfg.node.data_dir),
        lambda: check_identity(cfg.node.data_dir),
        lambda: check_ports(cfg),
        lambda: check_bootstrap(cfg.node.bootstrap, role, args.timeout),
    ]
    if role == "daemon":
        steps += [lambda: check_storage(cfg, env, args.timeout), check_torch]
    if role == "daemon":
        steps.append(lambda: check_reachability(_own_status(cfg.node.data_dir)))
    checks += [step() for step in steps]
    return checks


def run(args: argparse.Namespace) -> int:
    """Run the checks, print each verdict (and fix); exit 1 if any failed."""
    checks = run_checks(args, os.environ)
    if args.json:
        print_json([dataclasses.asdict(c) for c in checks])
    else:
        for c in checks:
            print(f"{c.verdict.upper():<5} {c.name:<13} {c.detail}")
            if c.fix and c.verdict != "pass":
                print(f"{'':<19}fix: {c.fix}")
        sys.stdout.flush()
    return EXIT_FAILED if any(c.verdict == "fail" for c in checks) else 0
