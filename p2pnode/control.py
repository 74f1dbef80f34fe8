r"""The control socket: JSON-RPC 2.0 over a Unix socket ``D/control.sock`` (mode 0600).

Framing (docs/control.md): one request per line -- UTF-8 JSON, no raw newline inside,
terminated by ``\n``; one response line per request that has an ``id``, in order. A
connection may carry many requests. A line longer than ``control.max_request_bytes`` is
answered with -32600 and the connection is closed, without parsing any of it. A
connection that sends nothing for ``timeouts.control_read_s`` is closed.

The client half (:func:`call`) uses only the standard library, so the CLI stays light.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import socket
import struct
from pathlib import Path
from typing import Any

import trio

from p2pnode.errors import ConfigError, ControlError, DaemonNotRunning
from p2pnode.rpc import INVALID_REQUEST, Routes, dispatch, error_line

log = logging.getLogger(__name__)

SOCKET_NAME = "control.sock"
MAX_CONNECTIONS = 64
MAX_SOCKET_PATH = 100
"""sockaddr_un holds 108 bytes on Linux; keep a margin."""


def socket_path(data_dir: Path) -> Path:
    """Return the control socket path of ``data_dir``."""
    return data_dir / SOCKET_NAME


class ControlServer:
    """Serves ``routes`` on the control socket of a data dir.

    Args:
        path: Socket path; a stale socket file there is replaced, a live one is an error.
        routes: The route table.
        max_request_bytes: Longest accepted request line, newline excluded.
        read_timeout_s: How long a connection may sit in the middle of a line.
    """

    def __init__(self, path: Path, routes: Routes, max_request_bytes: int, read_timeout_s: float):
        self.path = path
        self.routes = routes
        self.max_request_bytes = max_request_bytes
        self.read_timeout_s = read_timeout_s
        self._limiter = trio.CapacityLimiter(MAX_CONNECTIONS)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen until cancelled; the socket file is removed on the way out.

        Raises:
            ConfigError: ``node.data_dir`` makes the socket path too long, or another
                daemon already answers on it.
        """
        if len(os.fsencode(self.path)) > MAX_SOCKET_PATH:
            raise ConfigError("node.data_dir", f"socket path too long: {self.path}")
        if _is_live(self.path):
            raise ConfigError("node.data_dir", f"a daemon already runs at {self.path.parent}")
        self.path.unlink(missing_ok=True)
        sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o177)
        try:
            await sock.bind(os.fspath(self.path))
        finally:
            os.umask(old_umask)
        try:
            os.chmod(self.path, 0o600)
            sock.listen(MAX_CONNECTIONS)
            listener = trio.SocketListener(sock)
            async with listener, trio.open_nursery() as nursery:
                task_status.started()
                while True:
                    stream = await listener.accept()
                    nursery.start_soon(self._serve_one, stream)
        finally:
            self.path.unlink(missing_ok=True)

    async def _serve_one(self, stream: trio.SocketStream) -> None:
        async with stream, self._limiter:
            uid = peer_uid(stream)
            if uid is not None and uid != os.geteuid():
                # Mode 0600 already keeps other users out; this holds even if the
                # socket's mode is loosened by someone.
                log.warning("control socket: refused a client running as uid %d", uid)
                return
            try:
                await self._serve_lines(stream)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                log.debug("control client went away")
            except Exception:  # task boundary of one client: it must never end the daemon
                log.exception("control connection failed; closed it")

    async def _serve_lines(self, stream: trio.SocketStream) -> None:
        buf = bytearray()
        while True:
            newline = buf.find(b"\n")
            if newline < 0:
                if len(buf) > self.max_request_bytes:
                    msg = f"request too large (> {self.max_request_bytes} bytes)"
                    await stream.send_all(error_line(INVALID_REQUEST, msg))
                    return
                with trio.move_on_after(self.read_timeout_s):
                    chunk = await stream.receive_some(65536)
                    if not chunk:
                        return
                    buf += chunk
                    continue
                return
            line, buf = bytes(buf[:newline]), buf[newline + 1 :]
            if len(line) > self.max_request_bytes:
                msg = f"request too large (> {self.max_request_bytes} bytes)"
                await stream.send_all(error_line(INVALID_REQUEST, msg))
                return
            if not line.strip():
                continue
            answer = await dispatch(self.routes, line)
            if answer is not None:
                await stream.send_all(answer)


def peer_uid(stream: trio.SocketStream) -> int | None:
    """The uid of the process at the other end (Linux SO_PEERCRED), or None if unknown."""
    if not hasattr(socket, "SO_PEERCRED"):
        return None
    try:
        raw = stream.socket.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except OSError:
        return None
    _pid, uid, _gid = struct.unpack("3i", raw)
    return int(uid)


def _is_live(path: Path) -> bool:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.settimeout(1.0)
        s.connect(os.fspath(path))
    except OSError:
        return False
    finally:
        s.close()
    return True


CALL_TIMEOUT_S = 10.0
"""Default of :func:`call`'s ``timeout``: seconds each socket operation of a call may take."""


def call(data_dir: Path, method: str, params: dict[str, Any] | None = None,
         timeout: float = CALL_TIMEOUT_S) -> Any:
    """Call ``method`` on the daemon at ``data_dir`` and return its result (blocking).

    Each socket operation may take ``timeout`` seconds (:data:`CALL_TIMEOUT_S`).

    Raises:
        DaemonNotRunning: No socket, or nothing listening on it.
        ControlError: The daemon answered with an error (``code`` set), or the
            connection broke or timed out (``code`` 0).
    """
    path = socket_path(data_dir)
    req = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params or {}}
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        try:
            s.connect(os.fspath(path))
        except (FileNotFoundError, ConnectionRefusedError):
            raise DaemonNotRunning(path) from None
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.ECONNREFUSED, errno.ENOTSOCK):
                raise DaemonNotRunning(path) from None
            raise ControlError(0, f"cannot connect to {path}: {exc}") from None
        try:
            try:
                s.sendall(json.dumps(req).encode() + b"\n")
            except BrokenPipeError:
                pass  # the daemon refused mid-request (e.g. too large): read its answer
            data = b""
            while not data.endswith(b"\n"):
                chunk = s.recv(65536)
                if not chunk:
                    raise ControlError(0, "daemon closed the connection")
                data += chunk
        except TimeoutError:
            raise ControlError(0, f"no answer from daemon within {timeout}s") from None
        except OSError as exc:
            raise ControlError(0, f"control socket error: {exc}") from None
    try:
        resp = json.loads(data)
    except json.JSONDecodeError as exc:
        raise ControlError(0, f"bad answer from daemon: {exc}") from None
    if "error" in resp:
        err = resp["error"]
        raise ControlError(int(err.get("code", 0)), str(err.get("message")), err.get("data"))
    return resp.get("result")
