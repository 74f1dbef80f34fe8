"""Prometheus metrics are off by default and served when one config value turns them on."""

from __future__ import annotations

import socket
from pathlib import Path

import httpx

from p2pnode.commands.demo import clean_env
from p2pnode.procs import Processes
from tests.conftest import wait_for
from tests.e2e.helpers import answers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_metrics_endpoint(tmp_path: Path) -> None:
    (tmp_path / "logs").mkdir()
    procs = Processes(tmp_path)
    port = free_port()
    on, off = tmp_path / "on", tmp_path / "off"
    on.mkdir()
    (on / "config.toml").write_text(f"[metrics]\nenabled = true\nport = {port}\n")
    base = ["-m", "p2pnode.cli", "daemon", "--listen", "/ip4/127.0.0.1/tcp/0"]
    try:
        procs.start(
            "on", [*base, "--data-dir", str(on), "--config", str(on / "config.toml")], clean_env()
        )
        procs.start("off", [*base, "--data-dir", str(off)], clean_env())
        wait_for(lambda: answers(on) and answers(off), 60, what="both daemons")
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        for name in (
            "distro_train_peers",
            "distro_train_messages_dropped_total",
            "distro_train_rounds_total",
            "distro_train_updates_total",
            "distro_train_bytes_total",
            "distro_train_reputation_bucket",
        ):
            assert name in text, name
        for path in ("/healthz", "/readyz"):  # the same listener answers health checks
            answer = httpx.get(f"http://127.0.0.1:{port}{path}", timeout=5)
            assert (answer.status_code, answer.json()) == (200, {"ok": True, "reason": "ok"})
        assert httpx.get(f"http://127.0.0.1:{port}/nope", timeout=5).status_code == 404
        log = (tmp_path / "logs" / "off.log").read_text()
        assert "metrics at" not in log
    finally:
        procs.stop_all()
