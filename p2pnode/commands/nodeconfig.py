"""Build a node's effective config from a command line, and say where each value came from.

Shared by ``daemon``, ``bootstrap``, ``config show`` and ``doctor`` so that what
``config show`` prints is what the daemon runs with. The order, highest first:

1. flags (``--data-dir``, ``--listen``, ``--bootstrap``...),
2. environment (``DISTRO_TRAIN_HOME``, ``BOOTSTRAP_ADDR``, storage's ``AWS_*`` and
   ``DISTRO_TRAIN_S3_*``),
3. the config file: ``--config``, else ``DATA_DIR/config.toml`` when it exists,
4. defaults (port 4411; a bootstrap node's: data dir ``DATA_DIR/bootstrap``, port 4412).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from p2pnode.config import (
    SECTIONS,
    Config,
    NodeConfig,
    default_data_dir,
    env_overrides,
    load_config,
)

CONFIG_FILE = "config.toml"
"""Read from the data dir when no ``--config`` is given and the file exists."""
DAEMON_PORT = 4411
"""A daemon's default TCP port: clear of kubo's 4001 (and of MinIO's and Prometheus's)."""
BOOTSTRAP_PORT = 4412
"""A bootstrap node's default TCP port: next to the daemon's, so both run on one host."""
BOOTSTRAP_SUBDIR = "bootstrap"
"""A bootstrap node's default data dir is this folder inside the daemon's."""


def data_dir_for(args: argparse.Namespace, role: str, env: Mapping[str, str]) -> Path:
    """``--data-dir``, else the environment default (a bootstrap node: its subfolder)."""
    if getattr(args, "data_dir", None):
        return Path(args.data_dir).expanduser()
    home = default_data_dir(env)
    return home / BOOTSTRAP_SUBDIR if role == "bootstrap" else home


def config_file_for(args: argparse.Namespace, data_dir: Path) -> Path | None:
    """``--config``, else ``DATA_DIR/config.toml`` when it exists, else None."""
    if getattr(args, "config", None):
        return Path(args.config).expanduser()
    path = data_dir / CONFIG_FILE
    return path if path.is_file() else None


def flag_overrides(args: argparse.Namespace, role: str, data_dir: Path) -> dict[str, Any]:
    """The dotted config values the command line sets (None: flag not given)."""
    given = getattr(args, "data_dir", None) is not None
    return {
        # A bootstrap node's own data dir default outranks DISTRO_TRAIN_HOME.
        "node.data_dir": data_dir if given or role == "bootstrap" else None,
        "node.listen": getattr(args, "listen", None),
        "node.announce": getattr(args, "announce", None),
        "node.bootstrap": getattr(args, "bootstrap", None),
    }


def base_for(role: str) -> Config:
    """The defaults: listen on :data:`DAEMON_PORT`, or a bootstrap's :data:`BOOTSTRAP_PORT`."""
    cfg = Config()
    port = BOOTSTRAP_PORT if role == "bootstrap" else DAEMON_PORT
    cfg.node = NodeConfig(listen=[f"/ip4/0.0.0.0/tcp/{port}"])
    return cfg


def load_for(
    args: argparse.Namespace, role: str = "daemon", env: Mapping[str, str] | None = None
) -> tuple[Config, Path | None]:
    """The effective config for ``args`` and the config file read (or None).

    Raises:
        ConfigError: Naming the bad file, table or field.
    """
    env = os.environ if env is None else env
    data_dir = data_dir_for(args, role, env)
    path = config_file_for(args, data_dir)
    overrides = {k: v for k, v in flag_overrides(args, role, data_dir).items() if v is not None}
    return load_config(path, env=env, overrides=overrides, base=base_for(role)), path


def sources(
    args: argparse.Namespace, role: str, path: Path | None, env: Mapping[str, str]
) -> dict[str, str]:
    """Dotted field -> ``default``, ``file``, ``env`` or ``flag`` (the highest that set it)."""
    out: dict[str, str] = {}
    for section, cls in SECTIONS.items():
        for f in dataclasses.fields(cls):
            out[f"{section}.{f.name}"] = "default"
    if path is not None:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        for section, table in data.items():
            for key in table if isinstance(table, Mapping) else ():
                out[f"{section}.{key}"] = "file"
    from storage.config import ENV_VARS

    for name in env_overrides(env):
        out[name] = "env"
    for var, name in ENV_VARS.items():
        if env.get(var):
            out[f"storage.{name}"] = "env"
    data_dir = data_dir_for(args, role, env)
    for name, value in flag_overrides(args, role, data_dir).items():
        if value is not None:
            explicit = name != "node.data_dir" or getattr(args, "data_dir", None) is not None
            out[name] = "flag" if explicit else out[name]
    return out
