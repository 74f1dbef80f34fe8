"""``init`` and ``config show``: write a commented config, show the effective one.

``init`` creates the data dir (mode 0700) and writes ``DATA_DIR/config.toml``: every
table and field with its default, commented out, so uncommenting a line is the whole
edit. The daemon reads that file on start when no ``--config`` is given.

``config show`` prints every value the daemon would run with and its source:
``default``, ``file``, ``env`` or ``flag``. Secrets (fields whose name says secret,
token, password, credential or access key) are masked.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from p2pnode.commands.common import (
    EXIT_USAGE,
    JSON_HELP,
    add_config,
    add_data_dir,
    fail,
    print_json,
)

HEADER = """\
# distro-train configuration ({role}), written by `distro-train init`.
# Every line is a default, commented out: uncomment a line to change it.
# Precedence, highest first: flags, environment, this file, defaults.
# Check the result with `distro-train config show`; every field is described in
# docs/daemon.md, and `distro-train schema config` prints the JSON Schema.
"""


def add_init_arguments(parser: argparse.ArgumentParser) -> None:
    """``init [--force] [--bootstrap]``."""
    add_data_dir(parser)
    parser.add_argument("--force", action="store_true",
                        help="overwrite an existing config.toml")
    parser.add_argument("--bootstrap", dest="as_bootstrap", action="store_true",
                        help="for a bootstrap node (its default data dir and port)")
    parser.add_argument("--json", action="store_true", help=JSON_HELP)


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """``config show``."""
    subs = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    show = subs.add_parser("show", help="the effective configuration and each value's source",
                           description="Print every config value and its source: default, "
                                       "file, env or flag. Secrets are masked.")
    add_data_dir(show)
    add_config(show)
    show.add_argument("--json", action="store_true", help=JSON_HELP)
    show.add_argument("--bootstrap", dest="as_bootstrap", action="store_true",
                      help="a bootstrap node's configuration instead of a daemon's")
    show.add_argument("--listen", action="append", default=None, metavar="MADDR",
                      help="as the daemon's --listen (shows as source flag)")
    show.add_argument("--bootstrap-addr", dest="bootstrap", action="append",
                      default=None, metavar="MADDR", help="as the daemon's --bootstrap")


def _toml_value(value: Any) -> str:
    if isinstance(value, Path):
        value = str(value)
    return json.dumps(value)


def _package_defaults() -> dict[str, Any]:
    """The other packages' tables: their settings dataclasses."""
    from ledger.config import LedgerSettings
    from protocols.job.owner import OwnerConfig
    from protocols.job.selection import ReputationConfig
    from protocols.job.trainerconfig import TrainerConfig
    from protocols.market.terms import AskRule
    from storage.config import StoreConfig

    return {"storage": StoreConfig, "owner": OwnerConfig, "trainer": TrainerConfig,
            "reputation": ReputationConfig, "ledger": LedgerSettings, "market": AskRule}


def _fields_of(cls: Any) -> list[tuple[str, Any]]:
    out = []
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            out.append((f.name, f.default))
        elif f.default_factory is not dataclasses.MISSING:
            value = f.default_factory()
            if not dataclasses.is_dataclass(value):  # a nested table has its own [name]
                out.append((f.name, value))
    return out


def default_toml(role: str = "daemon") -> str:
    """The commented default config ``init`` writes."""
    from p2pnode.commands.nodeconfig import base_for
    from p2pnode.config import SECTIONS

    base = base_for(role)
    lines = [HEADER.format(role=role)]
    tables: list[tuple[str, str, list[tuple[str, Any]]]] = []
    for name, cls in SECTIONS.items():
        current = getattr(base, name)
        values = [(f.name, getattr(current, f.name)) for f in dataclasses.fields(current)]
        tables.append((name, (cls.__doc__ or "").strip().splitlines()[0], values))
    if role == "daemon":
        for name, cls in _package_defaults().items():
            tables.append((name, (cls.__doc__ or "").strip().splitlines()[0], _fields_of(cls)))
    for name, doc, values in tables:
        lines.append(f"# {doc}\n# [{name}]")
        for key, value in values:
            if key == "data_dir":
                lines.append(f"# {key} = {_toml_value(str(value))}  # or $DISTRO_TRAIN_HOME")
            elif value is None:
                lines.append(f"# {key} = ...  # unset by default")
            else:
                lines.append(f"# {key} = {_toml_value(value)}")
        lines.append("")
    return "\n".join(lines)


def run_init(args: argparse.Namespace) -> int:
    """Create the data dir and write its commented config.toml; print the path."""
    from p2pnode.commands.nodeconfig import CONFIG_FILE, data_dir_for
    from p2pnode.identity import write_atomic

    role = "bootstrap" if args.as_bootstrap else "daemon"
    data_dir = data_dir_for(args, role, os.environ)
    path = data_dir / CONFIG_FILE
    if path.exists() and not args.force:
        return fail(f"{path} exists; --force overwrites it", EXIT_USAGE)
    try:
        data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_atomic(path, default_toml(role).encode(), mode=0o600)
    except OSError as exc:
        return fail(f"cannot write {path}: {exc}")
    if args.json:
        print_json({"config": str(path), "data_dir": str(data_dir)})
    else:
        print(path)
    return 0


def _mask(key: str, value: Any) -> Any:
    from p2pnode.logs import MASK, SECRET_NAMES

    return MASK if value is not None and SECRET_NAMES.search(key) else value


def _jsonable(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return list(value)
    return value


def effective(args: argparse.Namespace, env: Mapping[str, str]) -> dict[str, Any]:
    """``{"file": path or None, "role": ..., "values": {dotted: {"value", "source"}}}``.

    Raises:
        NodeError: The configuration is invalid (as the daemon would refuse it).
    """
    from p2pnode.commands.nodeconfig import load_for, sources
    from p2pnode.config import SECTIONS
    from p2pnode.jobs import settings_from_table
    from storage.config import StoreConfig

    role = "bootstrap" if args.as_bootstrap else "daemon"
    cfg, path = load_for(args, role, env)
    where = sources(args, role, path, env)
    values: dict[str, Any] = {}

    def put(section: str, obj: Any) -> None:
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if dataclasses.is_dataclass(value):
                continue
            key = f"{section}.{f.name}"
            values[key] = {"value": _jsonable(_mask(f.name, value)),
                           "source": where.get(key, "default")}

    for section in SECTIONS:
        put(section, getattr(cfg, section))
    if role == "daemon":
        storage = cfg.extra.get("storage")
        if storage is None and not env.get("DISTRO_TRAIN_S3_ENDPOINT"):
            values["storage"] = {"value": f"embedded S3 server in {cfg.node.data_dir / 's3'}",
                                 "source": "default"}
        else:
            put("storage", StoreConfig.from_mapping(storage or {}, env=env))
        for section, cls in _package_defaults().items():
            if section != "storage":
                put(section, settings_from_table(cls, section, cfg.extra.get(section, {})))
    return {"file": str(path) if path else None, "role": role, "values": values}


def run_config(args: argparse.Namespace) -> int:
    """``config show``: print the effective configuration with sources."""
    from distro_errors import DistroError

    try:
        shown = effective(args, os.environ)
    except DistroError as exc:
        return fail(str(exc), EXIT_USAGE)
    if args.json:
        print_json(shown)
        return 0
    print(f"# {shown['role']} config; file: {shown['file'] or '(none)'}")
    width = max(len(k) for k in shown["values"])
    for key, item in shown["values"].items():
        print(f"{key:<{width}} = {json.dumps(item['value'])}  # {item['source']}")
    return 0
