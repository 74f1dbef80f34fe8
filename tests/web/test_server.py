"""The web server over real sockets (no browser): token, Host, Origin, the one route table.

A real :class:`WebServer` on loopback serves a real route table; requests go through
httpx. The browser tests (test_dashboard.py) drive the same server inside daemons.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from p2pnode.config import Config, load_config
from p2pnode.errors import ConfigError
from p2pnode.rpc import InvalidParams, Routes, dispatch
from p2pnode.web.auth import token_path
from p2pnode.web.server import WebServer


def make_routes() -> Routes:
    routes = Routes()

    async def echo(params: dict[str, Any]) -> dict[str, Any]:
        if params["text"] == "bad":
            raise InvalidParams("text", "must not be bad")
        return {"text": params["text"]}

    ticks = {"n": 0}

    async def tick(params: dict[str, Any]) -> int:
        ticks["n"] += 1
        return ticks["n"] // 3

    routes.add("demo.echo", echo, required={"text": str})
    routes.add("jobs.list", tick)
    return routes


def config(tmp: Path) -> Config:
    cfg = Config.for_tests(tmp)
    cfg.web.enabled = True
    cfg.web.port = 0
    cfg.web.events_interval_s = 0.05
    return cfg


async def serve(tmp: Path, nursery: trio.Nursery) -> tuple[WebServer, httpx.AsyncClient]:
    server = WebServer(config(tmp), make_routes())
    port = await nursery.start(server.run)
    client = httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}",
                               headers={"authorization": f"Bearer {server.token}"})
    return server, client


async def rpc(client: httpx.AsyncClient, body: bytes, **headers: str) -> httpx.Response:
    return await client.post("/api/rpc", content=body, headers=headers)


async def test_the_http_api_answers_exactly_what_the_socket_dispatcher_does(
        tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        server, client = await serve(tmp_path, nursery)
        routes = server.routes
        for body in [
            b'{"jsonrpc":"2.0","id":1,"method":"demo.echo","params":{"text":"hi"}}',
            b'{"jsonrpc":"2.0","id":2,"method":"demo.echo","params":{"text":"bad"}}',
            b'{"jsonrpc":"2.0","id":3,"method":"demo.echo","params":{}}',
            b'{"jsonrpc":"2.0","id":4,"method":"nope"}',
            b'{not json',
            b'[' * 100 + b']' * 100,
        ]:
            answer = await rpc(client, body)
            assert answer.status_code == 200
            assert answer.content == await dispatch(routes, body)
        too_big = b'{"x":"' + b"a" * (server.config.control.max_request_bytes + 1) + b'"}'
        answer = await rpc(client, too_big)
        assert answer.status_code == 413
        assert answer.json()["error"]["code"] == -32600
        nursery.cancel_scope.cancel()


async def test_the_built_pages_are_served_and_a_missing_build_is_a_clear_503(
        tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        server, client = await serve(tmp_path, nursery)
        page = await client.get("/")
        assert page.status_code == 200, "make venv / make web builds p2pnode/web/static"
        assert b'<div id="root">' in page.content
        server.static = {}  # what a daemon installed without the build has
        page = await client.get("/jobs/abc")
        assert page.status_code == 503
        assert "dashboard not built" in page.text
        nursery.cancel_scope.cancel()


async def test_no_token_wrong_token_other_origin_and_other_host_are_refused(
        tmp_path: Path) -> None:
    body = b'{"jsonrpc":"2.0","id":1,"method":"demo.echo","params":{"text":"hi"}}'
    async with trio.open_nursery() as nursery:
        server, client = await serve(tmp_path, nursery)
        bare = httpx.AsyncClient(base_url=str(client.base_url))
        assert (await bare.post("/api/rpc", content=body)).status_code == 401
        wrong = {"authorization": "Bearer " + "x" * len(server.token)}
        assert (await bare.post("/api/rpc", content=body, headers=wrong)).status_code == 401
        evil = await rpc(client, body, origin="http://evil.example")
        assert evil.status_code == 403
        assert "access-control-allow-origin" not in evil.headers
        rebound = await rpc(client, body, host=f"evil.example:{server.port}")
        assert rebound.status_code == 421
        own = await rpc(client, body, origin=f"http://127.0.0.1:{server.port}")
        assert own.json()["result"] == {"text": "hi"}
        assert "set-cookie" not in own.headers
        assert "access-control-allow-origin" not in own.headers
        nursery.cancel_scope.cancel()
    mode = stat.S_IMODE(os.stat(token_path(tmp_path)).st_mode)
    assert mode == 0o600


async def test_events_stream_each_change_of_a_watched_method(tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        _server, client = await serve(tmp_path, nursery)
        seen: list[Any] = []
        with trio.fail_after(10):
            async with client.stream("GET", "/api/events",
                                     params={"method": "jobs.list"}) as stream:
                assert stream.headers["content-type"].startswith("text/event-stream")
                async for line in stream.aiter_lines():
                    if line.startswith("data: "):
                        seen.append(json.loads(line[6:])["result"])
                    if len(seen) == 3:
                        break
        assert seen == [0, 1, 2]  # each value once: unchanged answers are not repeated
        refused = await client.get("/api/events", params={"method": "demo.echo"})
        assert refused.status_code == 400
        nursery.cancel_scope.cancel()


async def test_upload_is_stored_by_hash_and_garbage_http_does_not_end_the_server(
        tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        server, client = await serve(tmp_path, nursery)
        up = await client.post("/api/upload", params={"name": "data.csv"}, content=b"a,b\n1,2\n")
        path = Path(up.json()["path"])
        assert await trio.Path(path).read_bytes() == b"a,b\n1,2\n"
        assert path.parent.parent == tmp_path / "uploads"
        bad = await client.post("/api/upload", params={"name": "../x"}, content=b"x")
        assert bad.status_code == 400
        sock = await trio.open_tcp_stream("127.0.0.1", server.port)
        await sock.send_all(b"\x00\xffGARBAGE\r\n\r\n")
        assert (await sock.receive_some(100)).startswith(b"HTTP/1.1 400")
        await sock.aclose()
        ok = await rpc(client, b'{"jsonrpc":"2.0","id":1,"method":"jobs.list"}')
        assert "result" in ok.json()
        nursery.cancel_scope.cancel()


def test_allowed_hosts_are_loopback_the_bound_address_and_the_configured_names() -> None:
    from p2pnode.web.auth import allowed_hosts, host_ok

    allowed = allowed_hosts("0.0.0.0", 9470, ["Dash.Example"])
    assert host_ok("127.0.0.1:9470", allowed) and host_ok("localhost:9470", allowed)
    assert host_ok("dash.example", allowed) and host_ok("dash.example:9470", allowed)
    assert not host_ok("0.0.0.0:9470", allowed) and not host_ok("evil.example:9470", allowed)
    assert not host_ok(None, allowed) and not host_ok("127.0.0.1:9471", allowed)
    assert host_ok("10.0.0.5:9470", allowed_hosts("10.0.0.5", 9470, []))


def test_a_non_loopback_bind_needs_the_explicit_flag(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(overrides={"web.host": "0.0.0.0"}, env={}, base=Config.for_tests(tmp_path))
    assert err.value.field == "web.host"
    cfg = load_config(overrides={"web.host": "0.0.0.0", "web.allow_non_loopback": True},
                      env={}, base=Config.for_tests(tmp_path))
    assert cfg.web.host == "0.0.0.0"


def self_signed(tmp: Path) -> tuple[Path, Path]:
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    import ipaddress

    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1)
            .not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


async def test_tls_when_configured_and_a_warning_for_a_non_loopback_bind(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cert, key = self_signed(tmp_path)
    cfg = config(tmp_path)
    cfg.web.tls_cert, cfg.web.tls_key = str(cert), str(key)
    cfg.web.host, cfg.web.allow_non_loopback = "0.0.0.0", True
    server = WebServer(cfg, make_routes())
    async with trio.open_nursery() as nursery:
        port = await nursery.start(server.run)
        url = json.loads(await trio.Path(tmp_path / "web.json").read_text())["url"]
        assert url == f"https://127.0.0.1:{port}/"
        async with httpx.AsyncClient(verify=str(cert)) as client:
            answer = await client.post(
                f"{url}api/rpc", content=b'{"jsonrpc":"2.0","id":1,"method":"jobs.list"}',
                headers={"authorization": f"Bearer {server.token}"})
            assert answer.json()["result"] == 0
            plain = httpx.AsyncClient()
            with pytest.raises(httpx.HTTPError):
                await plain.get(f"http://127.0.0.1:{port}/api/rpc", timeout=5)
        nursery.cancel_scope.cancel()
    assert any("reachable from other machines" in r.getMessage() for r in caplog.records)
    assert not await trio.Path(tmp_path / "web.json").exists()
