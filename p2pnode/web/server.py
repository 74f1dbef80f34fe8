"""The web service: the dashboard's files and the control API over HTTP.

Paths (docs/web.md):

- ``GET /`` and ``GET /assets/...``: the built dashboard (``p2pnode/web/static``).
- ``POST /api/rpc``: one JSON-RPC 2.0 request, answered by the SAME route table and
  dispatcher as the control socket (:func:`p2pnode.rpc.dispatch`), so every method and
  every error is identical; HTTP status 200 for any JSON-RPC answer.
- ``GET /api/events?method=M&params=JSON``: server-sent events; the answer of the
  read-only method ``M`` each time it changes (``WATCHABLE``), checked every
  ``web.events_interval_s``.
- ``GET /api/jobs/<id>/model.safetensors | metrics.json | curve.png``: the job's
  files, the model fetched from the owner's store and checked against its sha256.
- ``POST /api/upload?name=N``: a dataset file, stored as ``D/uploads/<sha256>/<N>``;
  answers its path for a job spec.

Every ``/api/`` request needs ``Authorization: Bearer <D/web.token>``; every request
needs a Host header naming this server; an Origin header must be this server's own.
No cookies are set and no CORS header is sent.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import ssl
import urllib.parse
from collections.abc import AsyncIterator
from importlib import resources
from pathlib import Path
from typing import Any

import trio

import distro_json
from p2pnode.config import Config, is_loopback
from p2pnode.identity import write_atomic
from p2pnode.rpc import INVALID_REQUEST, Routes, dispatch, error_line
from p2pnode.web import auth
from p2pnode.web.httpserve import BodyTooLarge, Request, Response, serve_connection

log = logging.getLogger("distro_train.web")

WATCHABLE = frozenset({"node.id", "node.peers", "node.status", "jobs.list", "jobs.status",
                       "jobs.result", "trainer.status"})
"""Methods ``/api/events`` may repeat: read-only ones."""
MAX_MODEL_BYTES = 512 * 1024 * 1024
_JOB_FILE = re.compile(
    r"^/api/jobs/([A-Za-z0-9]{1,64})/(model\.safetensors|metrics\.json|curve\.png)$")
_UPLOAD_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
          ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml", ".json": "application/json",
          ".png": "image/png", ".ico": "image/x-icon", ".txt": "text/plain; charset=utf-8"}
SECURITY_HEADERS = [
    ("content-security-policy",
     "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; "
     "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"),
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "no-referrer"),
    ("cross-origin-resource-policy", "same-origin"),
]


def load_static(root: Any = None) -> dict[str, bytes]:
    """The built dashboard's files by URL path (``/index.html``, ``/assets/x.js``)."""
    base = root if root is not None else resources.files("p2pnode.web") / "static"
    out: dict[str, bytes] = {}
    stack = [(base, "")]
    while stack:
        folder, prefix = stack.pop()
        if not folder.is_dir():
            continue
        for item in folder.iterdir():
            if item.is_dir():
                stack.append((item, f"{prefix}/{item.name}"))
            elif not item.name.startswith("."):
                out[f"{prefix}/{item.name}"] = item.read_bytes()
    return out


class WebServer:
    """Serves the dashboard and ``routes`` over HTTP(S) as ``config.web`` says.

    Args:
        config: The daemon's config (``web``, ``node.data_dir``, control limits).
        routes: The daemon's one route table.
    """

    def __init__(self, config: Config, routes: Routes) -> None:
        self.config = config
        self.web = config.web
        self.routes = routes
        self.data_dir = config.node.data_dir
        self.token = auth.load_or_create_token(self.data_dir)
        self.static = load_static()
        self.scheme = "https" if self.web.tls_cert else "http"
        self.port = 0
        self._allowed: frozenset[str] = frozenset()
        self._limiter = trio.CapacityLimiter(self.web.max_connections)

    async def run(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen until cancelled; ``task_status.started(port)`` once accepting.

        Writes ``D/web.json`` (the URL, without the token) and removes it on the way out.
        """
        web = self.web
        if not is_loopback(web.host):
            log.warning("web dashboard listens on %s, reachable from other machines%s",
                        web.host, "" if web.tls_cert else " WITHOUT TLS")
        listeners = await trio.open_tcp_listeners(web.port, host=web.host)
        ssl_ctx = None
        if web.tls_cert:
            ssl_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ssl_ctx.load_cert_chain(web.tls_cert, web.tls_key)
        self.port = listeners[0].socket.getsockname()[1]
        self._allowed = auth.allowed_hosts(web.host, self.port, web.allowed_hosts)
        shown = "127.0.0.1" if web.host in ("0.0.0.0", "::") else web.host
        shown = f"[{shown}]" if ":" in shown else shown
        url = f"{self.scheme}://{shown}:{self.port}/"
        address = self.data_dir / auth.ADDRESS_NAME
        write_atomic(address, json.dumps({"url": url, "port": self.port}).encode(), mode=0o600)
        log.info("web dashboard at %s (distro-train web prints the login URL)", url)
        try:
            async with trio.open_nursery() as nursery:
                for listener in listeners:
                    nursery.start_soon(self._accept, listener, ssl_ctx)
                task_status.started(self.port)
        finally:
            address.unlink(missing_ok=True)

    async def _accept(self, listener: trio.SocketListener, ssl_ctx: ssl.SSLContext | None) -> None:
        async with listener, trio.open_nursery() as nursery:
            while True:
                stream = await listener.accept()
                nursery.start_soon(self._serve, stream, ssl_ctx)

    async def _serve(self, stream: trio.SocketStream, ssl_ctx: ssl.SSLContext | None) -> None:
        async with self._limiter:
            conn: trio.abc.Stream = stream
            if ssl_ctx is not None:
                conn = trio.SSLStream(stream, ssl_ctx, server_side=True)
            try:
                async with conn:
                    await serve_connection(conn, self.handle, SECURITY_HEADERS,
                                           self.config.timeouts.control_read_s)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                log.debug("web client went away")
            except Exception:  # task boundary of one client: it must never end the daemon
                log.exception("web connection failed; closed it")

    # ----- requests -----------------------------------------------------------------

    async def handle(self, req: Request) -> Response:
        """Answer one request (checks first, then by path)."""
        host = req.headers.get("host")
        if not auth.host_ok(host, self._allowed):
            return _text(421, "unknown Host; add it to web.allowed_hosts\n")
        assert host is not None
        if not auth.origin_ok(req.headers.get("origin"), host, self.scheme):
            return _text(403, "cross-origin request refused\n")
        if not req.path.startswith("/api/"):
            return self._static(req)
        if not auth.bearer_ok(req.headers.get("authorization"), self.token):
            return _text(401, "missing or wrong bearer token (distro-train web prints it)\n",
                         [("www-authenticate", 'Bearer realm="distro-train"')])
        if req.path == "/api/rpc" and req.method == "POST":
            return await self._rpc(req)
        if req.path == "/api/events" and req.method == "GET":
            return await self._events(req)
        if req.path == "/api/upload" and req.method == "POST":
            return await self._upload(req)
        match = _JOB_FILE.match(req.path)
        if match and req.method == "GET":
            return await self._job_file(match.group(1), match.group(2))
        return _text(404, "no such API path\n")

    def _static(self, req: Request) -> Response:
        if req.method not in ("GET", "HEAD"):
            return _text(405, "method not allowed\n")
        path = req.path if req.path in self.static else "/index.html"
        body = self.static.get(path)
        if body is None:
            return _text(503, "dashboard not built: run `make web` in the source tree\n")
        kind = _TYPES.get(os.path.splitext(path)[1], "application/octet-stream")
        cache = "public, max-age=31536000, immutable" if path.startswith("/assets/") else "no-store"
        return Response(200, body if req.method == "GET" else b"", kind, [("cache-control", cache)])

    async def _rpc(self, req: Request) -> Response:
        limit = self.config.control.max_request_bytes
        try:
            body = await req.body(limit)
        except BodyTooLarge:  # the control socket's own answer to an oversize line
            line = error_line(INVALID_REQUEST, f"request too large (> {limit} bytes)")
            return Response(413, line, "application/json")
        answer = await dispatch(self.routes, body)
        if answer is None:
            return Response(204)
        return Response(200, answer, "application/json", [("cache-control", "no-store")])

    async def call(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """Call ``method`` through the dispatcher; return the decoded JSON-RPC answer."""
        line = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
        answer = await dispatch(self.routes, line.encode())
        assert answer is not None
        decoded: dict[str, Any] = json.loads(answer)
        return decoded

    async def _events(self, req: Request) -> Response:
        query = urllib.parse.parse_qs(req.query)
        method = (query.get("method") or [""])[0]
        if method not in WATCHABLE:
            return _text(400, f"method must be one of {', '.join(sorted(WATCHABLE))}\n")
        try:
            params = distro_json.loads((query.get("params") or ["{}"])[0])
        except ValueError:
            return _text(400, "params must be a JSON object\n")
        if not isinstance(params, dict):
            return _text(400, "params must be a JSON object\n")
        await req.body(0)
        return Response(200, self._event_stream(method, params), "text/event-stream",
                        [("cache-control", "no-store")])

    async def _event_stream(self, method: str, params: dict[str, Any]) -> AsyncIterator[bytes]:
        last = ""
        quiet = 0.0
        interval = self.web.events_interval_s
        yield b"retry: 2000\n\n"
        while True:
            answer = json.dumps(await self.call(method, params), sort_keys=True, default=str)
            if answer != last:
                last, quiet = answer, 0.0
                yield f"data: {answer}\n\n".encode()
            elif quiet >= self.web.events_heartbeat_s:
                quiet = 0.0
                yield b": ping\n\n"
            await trio.sleep(interval)
            quiet += interval

    async def _upload(self, req: Request) -> Response:
        name = (urllib.parse.parse_qs(req.query).get("name") or [""])[0]
        if not _UPLOAD_NAME.match(name):
            return _text(400, "name: 1-128 letters, digits, '.', '_' or '-'\n")
        uploads = self.data_dir / "uploads"
        uploads.mkdir(mode=0o700, exist_ok=True)
        digest = hashlib.sha256()
        tmp = uploads / f".{name}.{os.getpid()}.part"
        size = 0
        try:
            with tmp.open("wb") as f:
                async for chunk in req.chunks(self.web.max_upload_bytes):
                    digest.update(chunk)
                    size += len(chunk)
                    await trio.to_thread.run_sync(f.write, chunk)
            folder = uploads / digest.hexdigest()
            folder.mkdir(mode=0o700, exist_ok=True)
            final = folder / name
            os.replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)
        body = {"path": str(final), "sha256": digest.hexdigest(), "bytes": size}
        return Response(200, json.dumps(body).encode(), "application/json")

    async def _job_file(self, job_id: str, name: str) -> Response:
        answer = await self.call("jobs.result", {"job_id": job_id})
        if "error" in answer:
            return Response(404, json.dumps(answer).encode(), "application/json")
        result = answer["result"]
        disposition = [("content-disposition", f'attachment; filename="{job_id}-{name}"'),
                       ("cache-control", "no-store")]
        from p2pnode.commands.results import metrics_records

        records = metrics_records(result)
        if name == "metrics.json":
            doc = {"job_id": job_id, "state": result["state"],
                   "model_sha256": result["model_sha256"],
                   "spec": json.loads(result["spec"]), "rounds": records}
            return Response(200, json.dumps(doc, indent=2).encode(), "application/json",
                            disposition)
        if name == "curve.png":
            png = await trio.to_thread.run_sync(_curve_png, records)
            return Response(200, png, "image/png", disposition)
        if not result.get("model_url") or not result.get("model_sha256"):
            return _text(409, "this job has no model yet\n")
        from p2pnode.stores import fetch_verified

        model = await trio.to_thread.run_sync(
            fetch_verified, result["model_url"], result["model_sha256"], MAX_MODEL_BYTES,
            result.get("model_encryption"))
        return Response(200, model, "application/octet-stream",
                        [*disposition, ("x-model-sha256", result["model_sha256"])])


def _curve_png(records: list[dict[str, Any]]) -> bytes:
    import tempfile

    from p2pnode.commands.results import plot_curve

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "curve.png"
        plot_curve(records, path)
        return path.read_bytes()


def _text(status: int, text: str, headers: list[tuple[str, str]] | None = None) -> Response:
    return Response(status, text.encode(), headers=list(headers or []))


def data_dir_address(data_dir: Path) -> dict[str, Any] | None:
    """The running dashboard's ``{"url", "port"}`` from ``D/web.json``, or None."""
    try:
        decoded = json.loads((data_dir / auth.ADDRESS_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return decoded if isinstance(decoded, dict) and isinstance(decoded.get("url"), str) else None
