"""Each ``distro-train doctor`` check, passing and failing on a real set-up."""

from __future__ import annotations

import json
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from p2pnode.cli import main
from p2pnode.commands.doctor import (
    check_bootstrap,
    check_data_dir,
    check_identity,
    check_ports,
    check_reachability,
    check_storage,
    check_torch,
)
from p2pnode.config import Config, load_config
from p2pnode.identity import load_or_create_identity
from tests.s3servers import ServerHandle

PEER = "12D3KooWDzpVNmq32sN8YuoWTCQRPBGg764m5abgzD3NbvyRzhfC"


@pytest.fixture
def listening() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield int(s.getsockname()[1])


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def config_at(data_dir: Path, port: int) -> Config:
    return load_config(None, env={}, overrides={
        "node.data_dir": data_dir, "node.listen": [f"/ip4/127.0.0.1/tcp/{port}"]})


def test_data_dir(tmp_path: Path) -> None:
    d = tmp_path / "d"
    assert check_data_dir(d).verdict == "pass"  # created on first start
    load_or_create_identity(d)
    assert check_data_dir(d).verdict == "pass"
    os.chmod(d, 0o755)
    assert check_data_dir(d).verdict == "warn"
    os.chmod(d / "identity.key", 0o644)
    bad = check_data_dir(d)
    assert bad.verdict == "fail" and "chmod 600" in bad.fix
    (tmp_path / "file").write_text("x")
    assert check_data_dir(tmp_path / "file").verdict == "fail"


def test_identity(tmp_path: Path) -> None:
    assert check_identity(tmp_path).verdict == "pass"  # none yet: created on start
    load_or_create_identity(tmp_path)
    ok = check_identity(tmp_path)
    assert ok.verdict == "pass" and ok.detail.startswith("peer id 12D3KooW")
    (tmp_path / "identity.key").write_bytes(b"short")
    bad = check_identity(tmp_path)
    assert bad.verdict == "fail" and "expected 32 bytes" in bad.detail and bad.fix


def test_ports(tmp_path: Path, listening: int) -> None:
    assert check_ports(config_at(tmp_path, closed_port())).verdict == "pass"
    busy = check_ports(config_at(tmp_path, listening))
    assert busy.verdict == "fail" and f"127.0.0.1:{listening} in use" in busy.detail


def test_bootstrap(listening: int) -> None:
    up = f"/ip4/127.0.0.1/tcp/{listening}/p2p/{PEER}"
    down = f"/ip4/127.0.0.1/tcp/{closed_port()}/p2p/{PEER}"
    assert check_bootstrap([up], "daemon", 2.0).verdict == "pass"
    assert check_bootstrap([up, down], "daemon", 2.0).verdict == "warn"
    bad = check_bootstrap([down], "daemon", 2.0)
    assert bad.verdict == "fail" and "refused" in bad.detail.lower()
    assert check_bootstrap([], "daemon", 2.0).verdict == "warn"
    assert check_bootstrap([], "bootstrap", 2.0).verdict == "pass"


def test_storage(tmp_path: Path, nanio_server: ServerHandle) -> None:
    c = nanio_server.config
    table = {"endpoint": c.endpoint, "bucket": c.bucket, "region": c.region,
             "access_key": c.access_key, "secret_key": c.secret_key}
    cfg = config_at(tmp_path, 0)
    cfg.extra["storage"] = table
    ok = check_storage(cfg, {}, 5.0)
    assert ok.verdict == "pass", ok
    cfg.extra["storage"] = {**table, "secret_key": "wrong-secret"}
    bad = check_storage(cfg, {}, 5.0)
    assert bad.verdict == "fail" and "wrong-secret" not in bad.detail + bad.fix
    cfg.extra["storage"] = {**table, "endpoint": f"http://127.0.0.1:{closed_port()}"}
    assert check_storage(cfg, {}, 2.0).verdict == "fail"
    cfg.extra.pop("storage")
    assert check_storage(cfg, {}, 2.0).verdict == "pass"  # embedded nanio is installed


def test_torch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ok = check_torch()
    assert ok.verdict == "pass" and ("trains on cpu" in ok.detail or "cuda" in ok.detail)
    (tmp_path / "broken_torch.py").write_text("raise OSError('libtorch_cpu.so: cannot open')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    bad = check_torch("broken_torch")
    assert bad.verdict == "fail" and "libtorch_cpu.so" in bad.detail
    assert "distro-train[train]" in bad.fix
    sys.modules.pop("broken_torch", None)


def test_reachability_verdicts() -> None:
    """The verdicts for each answer a running daemon gives (its node.status ``nat``)."""
    assert check_reachability(None).verdict == "skip"
    assert check_reachability({"nat": {"reachability": "unknown"}}).verdict == "skip"
    assert check_reachability({"nat": {"reachability": "public"}}).verdict == "pass"
    behind = check_reachability({"nat": {"reachability": "private", "relays": ["/ip4/x"]}})
    assert behind.verdict == "warn" and "--announce" in behind.fix
    stuck = check_reachability({"nat": {"reachability": "private", "relays": []}})
    assert stuck.verdict == "fail" and "cannot dial" in stuck.detail


def test_doctor_command_exit_code_and_json(
    tmp_path: Path, listening: int, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("BOOTSTRAP_ADDR", raising=False)
    d = tmp_path / "d"
    d.mkdir(mode=0o700)
    (d / "config.toml").write_text(f'[node]\nlisten = ["/ip4/127.0.0.1/tcp/{closed_port()}"]\n'
                                   f'bootstrap = ["/ip4/127.0.0.1/tcp/{listening}/p2p/{PEER}"]\n')
    assert main(["doctor", "--json", "--data-dir", str(d)]) == 0
    checks = {c["name"]: c for c in json.loads(capsys.readouterr().out)}
    assert [checks[n]["verdict"] for n in ("config", "data_dir", "identity", "ports",
                                           "bootstrap", "storage", "torch")] == ["pass"] * 7
    assert checks["reachability"]["verdict"] == "skip"
    (d / "config.toml").write_text(f'[node]\nlisten = ["/ip4/127.0.0.1/tcp/{listening}"]\n')
    assert main(["doctor", "--data-dir", str(d)]) == 1
    out = capsys.readouterr().out
    assert "FAIL  ports" in out and "fix: " in out
    (d / "config.toml").write_text("[metric]\n")
    assert main(["doctor", "--data-dir", str(d)]) == 1
    assert "FAIL  config" in capsys.readouterr().out
