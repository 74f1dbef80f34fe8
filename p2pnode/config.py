"""Daemon configuration: one dataclass per section, defaults, test defaults, validation.

Sources, highest precedence first:

1. CLI flags (passed to :func:`load_config` as dotted ``overrides``),
2. environment (``DISTRO_TRAIN_HOME`` -> ``node.data_dir``, ``BOOTSTRAP_ADDR``
   comma-separated -> ``node.bootstrap``),
3. the TOML file given by ``--config``,
4. the defaults below.

Every section is a dataclass whose annotations are its schema, checked by
:mod:`distro_schema` (strict types, ranges, unknown fields refused). The tables of
other packages (:data:`PACKAGE_TABLES`: ``[storage]``, ``[owner]``...) are kept as raw
mappings in :attr:`Config.extra` for those packages to validate; any other top-level
table is refused. Field by field documentation lives in docs/daemon.md.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, get_type_hints

import multiaddr
from pydantic import AfterValidator, Field, PositiveFloat, PositiveInt

import distro_schema
from p2pnode.connections import ConnectionsConfig
from p2pnode.errors import ConfigError

DEFAULT_HOME = "~/.distro-train"
DEFAULT_PORT = 4411
"""Default libp2p TCP port: not 4001 (IPFS/kubo), nor 9000/9090 (MinIO, Prometheus)."""
PACKAGE_TABLES = ("storage", "owner", "trainer", "reputation", "ledger", "market")
"""Top-level tables other packages validate (kept raw in :attr:`Config.extra`)."""



def default_data_dir(env: Mapping[str, str] | None = None) -> Path:
    """Return ``$DISTRO_TRAIN_HOME`` or ``~/.distro-train`` (expanded)."""
    env = os.environ if env is None else env
    return Path(env.get("DISTRO_TRAIN_HOME") or DEFAULT_HOME).expanduser()


@dataclass
class NodeConfig:
    """Identity location and addresses."""

    data_dir: Annotated[Path, Field(strict=False), AfterValidator(Path.expanduser)] = field(
        default_factory=default_data_dir
    )
    listen: list[str] = field(default_factory=lambda: [f"/ip4/0.0.0.0/tcp/{DEFAULT_PORT}"])
    announce: list[str] = field(default_factory=list)
    """Addresses advertised to peers instead of the listen ones (a public IP, a port
    forwarded by the router); empty: the listen addresses, 0.0.0.0 expanded."""
    bootstrap: list[str] = field(default_factory=list)


@dataclass
class TimeoutsConfig:
    """Every network wait of the daemon, in seconds."""

    dial_s: PositiveFloat = 5.0
    request_s: PositiveFloat = 10.0
    dht_lookup_s: PositiveFloat = 10.0
    publish_s: PositiveFloat = 5.0
    control_read_s: PositiveFloat = 10.0
    shutdown_s: PositiveFloat = 4.0
    stream_close_s: PositiveFloat = 1.0


@dataclass
class DiscoveryConfig:
    """DHT lookups that find peers and connect to them directly."""

    interval_s: PositiveFloat = 2.0
    max_interval_s: PositiveFloat = 60.0
    max_dials_per_round: PositiveInt = 32


@dataclass
class PresenceConfig:
    """The presence topic: publish period and when a silent peer is forgotten."""

    interval_s: PositiveFloat = 5.0
    silence_timeout_s: PositiveFloat = 20.0
    expire_check_s: PositiveFloat = 1.0
    max_received_per_second: PositiveFloat = 2.0
    """Presence messages a daemon should receive per second from the whole network: with
    N live peers the period stretches to N / this (and the silence timeout with it), so
    the load per daemon stays bounded as the network grows (each message costs every
    daemon CPU: bench/network.py measures it)."""


@dataclass
class GossipConfig:
    """Gossipsub router parameters (see p2pnode/host.py for why each is set)."""

    heartbeat_s: PositiveInt = 1
    max_heartbeat_s: PositiveInt = 5
    heartbeat_peers_per_s: PositiveFloat = 10.0
    """The heartbeat stretches to N peers / this (each sends IHAVE to ~N/4 peers)."""
    mesh_degree: PositiveInt = 6
    mesh_degree_low: PositiveInt = 4
    mesh_degree_high: PositiveInt = 12
    """Each message reaches a daemon about once per mesh peer; pruning down from above this
    makes the pruned peers back off, so a tight bound costs mesh churn."""
    resubscribe_s: PositiveFloat = 30.0
    """Our topic list is sent to every peer again this often (lost subscriptions)."""
    max_messages_per_topic_per_second: PositiveFloat = 100.0
    subscription_queue: PositiveInt = 256
    future_skew_s: PositiveFloat = 5.0
    replay_window_s: PositiveFloat = 120.0
    replay_capacity: PositiveInt = 20_000
    replay_per_sender: PositiveInt = 1_000
    peer_messages_per_second: PositiveFloat = 50.0
    peer_burst: PositiveInt = 500
    peer_invalid_cost: PositiveFloat = 10.0
    peer_max_strikes: PositiveInt = 200
    peer_ban_s: PositiveFloat = 300.0


@dataclass
class NatConfig:
    """NAT traversal (docs/network.md): dial-back reachability, relays, hole punching."""

    relay_service: bool = True
    """Bootstrap nodes relay for daemons behind NAT (circuit relay v2); daemons never do."""
    relay_max_reservations: PositiveInt = 128
    relay_max_circuits: PositiveInt = 256
    relay_circuit_duration_s: PositiveInt = 3600
    relay_circuit_bytes: PositiveInt = 256 * 1024 * 1024
    """A relayed connection is cut after this many bytes (py-libp2p cuts the whole
    connection, not one stream); the daemon then reconnects through the relay."""
    use_relays: bool = True
    """A daemon found unreachable reserves slots on the bootstrap nodes it is connected to."""
    hole_punch: bool = True
    """Upgrade relayed connections to direct ones (DCUtR) where the NATs allow."""
    reservation_refresh_s: PositiveFloat = 60.0
    """How often reachability is checked and reservations renewed."""
    dialback_connect_s: PositiveFloat = 2.0
    """How long a bootstrap node's dial-back may take to connect to each port named."""
    hole_punch_dial_s: PositiveInt = 2
    """How long each direct dial of a hole punch (DCUtR) may take (whole seconds: the
    library takes an int)."""


@dataclass
class ControlConfig:
    """The JSON-RPC control socket and the peer request/response limits."""

    max_request_bytes: Annotated[int, Field(ge=64)] = 1024 * 1024
    max_peer_message_bytes: PositiveInt = 1024 * 1024
    debug_routes: bool = False


@dataclass
class WorkConfig:
    """Capacity this daemon advertises."""

    queue_capacity: PositiveInt = 4
    min_health_to_work: Annotated[float, Field(ge=0, le=100)] = 20.0


@dataclass
class MetricsConfig:
    """Prometheus metrics: off by default; ``enabled = true`` serves ``/metrics``."""

    enabled: bool = False
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 9464
    heartbeat_s: PositiveFloat = 1.0
    """How often the event loop ticks ``/healthz`` (and systemd's watchdog when asked)."""
    stale_after_s: PositiveFloat = 10.0
    """``/healthz`` fails once the last tick is older than this."""


@dataclass
class WebConfig:
    """The web dashboard and the HTTP form of the control API (docs/web.md): off by default."""

    enabled: bool = False
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 9470  # 0 = any free port
    allow_non_loopback: bool = False  # required to bind an address other than loopback
    allowed_hosts: list[str] = field(default_factory=list)  # extra Host names to accept
    tls_cert: str = ""  # PEM files; both set = HTTPS
    tls_key: str = ""
    events_interval_s: PositiveFloat = 1.0
    events_heartbeat_s: PositiveFloat = 15.0  # a quiet event stream sends a comment this often
    max_upload_bytes: PositiveInt = 256 * 1024 * 1024
    max_connections: PositiveInt = 64


@dataclass
class Config:
    """The whole daemon configuration. ``extra`` holds other packages' raw tables."""

    node: NodeConfig = field(default_factory=NodeConfig)
    timeouts: TimeoutsConfig = field(default_factory=TimeoutsConfig)
    discovery: DiscoveryConfig = field(default_factory=DiscoveryConfig)
    presence: PresenceConfig = field(default_factory=PresenceConfig)
    gossip: GossipConfig = field(default_factory=GossipConfig)
    connections: ConnectionsConfig = field(default_factory=ConnectionsConfig)
    control: ControlConfig = field(default_factory=ControlConfig)
    work: WorkConfig = field(default_factory=WorkConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    nat: NatConfig = field(default_factory=NatConfig)
    web: WebConfig = field(default_factory=WebConfig)
    extra: dict[str, Mapping[str, Any]] = field(default_factory=dict)

    @classmethod
    def for_tests(cls, data_dir: Path) -> Config:
        """Short timeouts and periods for loopback tests, listening on a free port."""
        cfg = cls()
        cfg.node = NodeConfig(data_dir=data_dir, listen=["/ip4/127.0.0.1/tcp/0"])
        cfg.timeouts = TimeoutsConfig(
            dial_s=3.0, request_s=5.0, dht_lookup_s=5.0, publish_s=3.0,
            control_read_s=5.0, shutdown_s=3.0,
        )
        cfg.discovery = DiscoveryConfig(interval_s=1.0, max_interval_s=8.0)
        cfg.presence = PresenceConfig(interval_s=1.0, silence_timeout_s=6.0,
                                      max_received_per_second=1000.0)
        cfg.control = ControlConfig(max_request_bytes=64 * 1024, debug_routes=True)
        return cfg

    def validate(self) -> Config:
        """Check every field against its annotation, then the cross-field rules; return self.

        Raises:
            ConfigError: Naming the first bad field.
        """
        for section in SECTIONS:
            distro_schema.check(getattr(self, section), error=ConfigError, prefix=section)
        for i, addr in enumerate(self.node.listen):
            _check_multiaddr(f"node.listen[{i}]", addr, need_peer=False)
        if not self.node.listen:
            raise ConfigError("node.listen", "at least one address is needed")
        for i, addr in enumerate(self.node.bootstrap):
            _check_multiaddr(f"node.bootstrap[{i}]", addr, need_peer=True)
        for i, addr in enumerate(self.node.announce):
            _check_multiaddr(f"node.announce[{i}]", addr, need_peer=False)
            if "/ip4/0.0.0.0/" in addr + "/" or "/ip6/::/" in addr + "/":
                raise ConfigError(f"node.announce[{i}]", f"nobody can dial {addr!r}")
        if self.presence.silence_timeout_s < 2 * self.presence.interval_s:
            raise ConfigError("presence.silence_timeout_s", "must be >= 2 * presence.interval_s")
        g = self.gossip
        if not g.mesh_degree_low <= g.mesh_degree <= g.mesh_degree_high:
            raise ConfigError("gossip.mesh_degree",
                              "needs mesh_degree_low <= mesh_degree <= mesh_degree_high")
        if g.max_heartbeat_s < g.heartbeat_s:
            raise ConfigError("gossip.max_heartbeat_s", "must be >= gossip.heartbeat_s")
        if self.connections.high_water < self.connections.low_water:
            raise ConfigError("connections.high_water", "must be >= connections.low_water")
        if self.discovery.max_interval_s < self.discovery.interval_s:
            raise ConfigError("discovery.max_interval_s", "must be >= discovery.interval_s")
        _check_web(self.web)
        return self


SECTIONS: dict[str, type] = {
    name: cls for name, cls in get_type_hints(Config).items() if name != "extra"
}
"""Our own tables by name, in file order: every field of :class:`Config` but ``extra``."""


def _check_web(web: WebConfig) -> None:
    if bool(web.tls_cert) != bool(web.tls_key):
        raise ConfigError("web.tls_cert", "set both web.tls_cert and web.tls_key, or neither")
    if not web.allow_non_loopback and not is_loopback(web.host):
        raise ConfigError("web.host", f"{web.host!r} is not a loopback address; "
                          "set web.allow_non_loopback = true to serve other machines")


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an IP address or ``localhost``) names this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_multiaddr(name: str, addr: str, *, need_peer: bool) -> None:
    try:
        ma = multiaddr.Multiaddr(addr)
    except Exception as exc:  # noqa: BLE001 - the parser raises several unrelated types
        raise ConfigError(name, f"not a multiaddr: {addr!r} ({exc})") from None
    if need_peer and "p2p" not in [p.name for p in ma.protocols()]:
        raise ConfigError(name, f"must end in /p2p/<peer id>: {addr!r}")


def _tables(data: Mapping[str, Any], extra: dict[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Split a parsed file into our sections' tables and other packages' raw tables."""
    ours: dict[str, Any] = {}
    for section, table in data.items():
        if not isinstance(table, Mapping):
            raise ConfigError(section, "top-level keys must be tables like [node]")
        if section in SECTIONS:
            ours[section] = dict(table)
        elif section in PACKAGE_TABLES:
            extra[section] = dict(table)
        else:
            known = ", ".join([*SECTIONS, *PACKAGE_TABLES])
            raise ConfigError(section, f"unknown table; known tables: {known}")
    return ours


def _merge(cfg: Config, tables: dict[str, dict[str, Any]]) -> None:
    """Replace each section named in ``tables`` by its current values updated by them."""
    for section, table in tables.items():
        current = getattr(cfg, section)
        values = {f.name: getattr(current, f.name) for f in dataclasses.fields(current)}
        values.update(table)
        cls = SECTIONS[section]
        setattr(cfg, section, distro_schema.load(cls, values, error=ConfigError, prefix=section))


def _dotted(dotted: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    tables: dict[str, dict[str, Any]] = {}
    for name, value in dotted.items():
        section, _, key = name.partition(".")
        if section not in SECTIONS:
            raise ConfigError(name, "unknown section")
        tables.setdefault(section, {})[key] = value
    return tables


def env_overrides(env: Mapping[str, str]) -> dict[str, Any]:
    """Return the dotted overrides that ``env`` implies."""
    out: dict[str, Any] = {}
    if env.get("DISTRO_TRAIN_HOME"):
        out["node.data_dir"] = env["DISTRO_TRAIN_HOME"]
    if env.get("BOOTSTRAP_ADDR"):
        out["node.bootstrap"] = [a.strip() for a in env["BOOTSTRAP_ADDR"].split(",") if a.strip()]
    return out


def load_config(
    path: Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    base: Config | None = None,
) -> Config:
    """Build and validate a Config from defaults, file, environment and flags.

    Args:
        path: TOML file (``--config``); ``None`` for none.
        env: Environment to read (defaults to ``os.environ``).
        overrides: Dotted CLI-flag values, e.g. ``{"node.bootstrap": [...]}``;
            ``None`` values are ignored (flag not given).
        base: Starting point instead of the defaults (e.g. ``Config.for_tests``).

    Raises:
        ConfigError: Unreadable file, unknown table or field, wrong type or invalid value.
    """
    cfg = base if base is not None else Config()
    if path is not None:
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError("--config", f"{path}: {exc}") from None
        _merge(cfg, _tables(data, cfg.extra))
    _merge(cfg, _dotted(env_overrides(os.environ if env is None else env)))
    _merge(cfg, _dotted({k: v for k, v in (overrides or {}).items() if v is not None}))
    return cfg.validate()


def schema() -> dict[str, Any]:
    """The JSON Schema of the daemon's own tables (``distro-train schema config``).

    Other packages' tables (:data:`PACKAGE_TABLES`) have their own schemas.
    """
    return {
        "title": "distro-train daemon config",
        "type": "object",
        "additionalProperties": False,
        "properties": {name: distro_schema.schema(cls) for name, cls in SECTIONS.items()},
    }
