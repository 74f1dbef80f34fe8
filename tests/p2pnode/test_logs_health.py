"""JSON/text log lines (parse, carry the fields, never a secret) and the health endpoints."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from p2pnode.logs import LogLevelError, parse_levels, setup_logging
from p2pnode.metrics import STALE_AFTER_S, Health, serve_metrics

PRESIGNED = ("https://bucket.s3.example.org/jobs/abc/chunk-0?X-Amz-Algorithm=AWS4-HMAC-SHA256"
             "&X-Amz-Credential=AKIAEXAMPLE%2F20261130&X-Amz-Signature=deadbeefcafe0123")


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    levels = {n: logging.getLogger(n).level for n in ("libp2p", "httpx", "distro_train")}
    yield
    for h in list(root.handlers):
        root.removeHandler(h)
    for h in handlers:
        root.addHandler(h)
    root.setLevel(level)
    for name, value in levels.items():
        logging.getLogger(name).setLevel(value)


def _emit(fmt: str, level: str = "DEBUG") -> str:
    out = io.StringIO()
    setup_logging(level, fmt, stream=out)
    log = logging.getLogger("distro_train.trainer")
    log.info("fetching %s for job %s", PRESIGNED, "abc")
    log.warning("upload refused", extra={"url": PRESIGNED, "secret_key": "s3cr3t-value",
                                         "round": 3, "peers": ["a", "b"]})
    try:
        raise RuntimeError(f"GET {PRESIGNED} failed")
    except RuntimeError:
        log.exception("task failed")
    return out.getvalue()


def test_json_lines_parse_and_carry_the_fields(restore_logging: None) -> None:
    text = _emit("json")
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    assert len(lines) == 3
    for line in lines:
        assert set(line) >= {"ts", "level", "component", "event", "fields"}
        assert line["component"] == "distro_train.trainer"
        assert line["ts"].endswith("Z") and "T" in line["ts"]
    first, second, third = lines
    assert first["level"] == "INFO"
    assert first["event"] == ("fetching https://bucket.s3.example.org/jobs/abc/chunk-0?<redacted>"
                              " for job abc")
    assert second["level"] == "WARNING" and second["event"] == "upload refused"
    assert second["fields"] == {
        "url": "https://bucket.s3.example.org/jobs/abc/chunk-0?<redacted>",
        "secret_key": "<redacted>", "round": 3, "peers": ["a", "b"]}
    assert third["level"] == "ERROR" and "RuntimeError" in third["error"]


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_no_secret_or_signature_reaches_a_log_line(restore_logging: None, fmt: str) -> None:
    text = _emit(fmt)
    for secret in ("s3cr3t-value", "X-Amz-Signature", "deadbeefcafe0123", "AKIAEXAMPLE",
                   "X-Amz-Credential"):
        assert secret not in text, (fmt, secret)
    assert "chunk-0?<redacted>" in text


def test_levels_per_logger_and_libp2p_not_pinned(restore_logging: None) -> None:
    assert parse_levels("WARNING,libp2p=DEBUG") == (logging.WARNING, {"libp2p": logging.DEBUG})
    with pytest.raises(LogLevelError):
        parse_levels("LOUD")
    with pytest.raises(LogLevelError):
        parse_levels("=DEBUG")
    setup_logging("INFO,libp2p=DEBUG", "text", stream=io.StringIO())
    assert logging.getLogger("libp2p").level == logging.DEBUG
    setup_logging("INFO", "text", stream=io.StringIO())
    assert logging.getLogger("libp2p").level == logging.WARNING  # quiet unless asked
    setup_logging("ERROR", "text", stream=io.StringIO())
    assert logging.getLogger("libp2p").level == logging.ERROR


class _Peers:
    """The collector's only view of a node: how many peers are live."""

    def peers(self) -> list[str]:
        return ["p1", "p2"]


def test_health_endpoints_follow_readiness_and_the_heartbeat() -> None:
    from p2pnode.metrics import NodeCollector

    health = Health()
    node: Any = _Peers()
    server = serve_metrics(NodeCollector(node), health, "127.0.0.1", 0)
    base = f"http://127.0.0.1:{server.server_port}"
    try:
        def get(path: str) -> tuple[int, Any]:
            r = httpx.get(base + path, timeout=5)
            return r.status_code, r.json()

        assert get("/healthz") == (200, {"ok": True, "reason": "ok"})
        assert get("/readyz") == (503, {"ok": False, "reason": "starting"})
        health.set_ready()
        assert get("/readyz") == (200, {"ok": True, "reason": "ok"})
        health.last_beat -= STALE_AFTER_S + 1  # the event loop stopped turning
        code, body = get("/healthz")
        assert code == 503 and body["reason"].startswith("event loop silent")
        assert get("/readyz")[0] == 503
        health.beat()
        assert get("/healthz")[0] == 200
        assert "distro_train_peers 2.0" in httpx.get(base + "/metrics", timeout=5).text
    finally:
        server.shutdown()
        server.server_close()


def test_the_staleness_limit_is_the_configured_one() -> None:
    relaxed = Health(stale_after_s=STALE_AFTER_S * 3)
    relaxed.last_beat -= STALE_AFTER_S + 1
    assert relaxed.alive() == (True, "ok")
    relaxed.last_beat -= STALE_AFTER_S * 2
    assert not relaxed.alive()[0]
