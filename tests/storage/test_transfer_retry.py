"""Retry and streaming-limit behaviour of the by-URL client, against a scripted HTTP server."""

from __future__ import annotations

import hashlib
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from storage.errors import TooLarge, TransferFailed
from storage.retry import RetryPolicy
from storage.transfer import fetch, upload

FAST = RetryPolicy(attempts=4, base_delay_s=0.01, max_delay_s=0.05)
BODY = b"x" * 5000


class Script:
    """What the server answers: a list of statuses consumed in order, then 200."""

    def __init__(self) -> None:
        self.statuses: list[int] = []
        self.requests = 0
        self.chunked = False
        self.received: list[bytes] = []


@pytest.fixture
def server() -> Iterator[tuple[str, Script]]:
    script = Script()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def _status(self) -> int:
            script.requests += 1
            return script.statuses.pop(0) if script.statuses else 200

        def do_GET(self) -> None:
            status = self._status()
            if status != 200:
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(200)
            if script.chunked:  # no Content-Length: the limit must hold while streaming
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for start in range(0, len(BODY), 1000):
                    piece = BODY[start : start + 1000]
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                self.wfile.write(b"0\r\n\r\n")
            else:
                self.send_header("Content-Length", str(len(BODY)))
                self.end_headers()
                self.wfile.write(BODY)

        def do_PUT(self) -> None:
            length = int(self.headers["Content-Length"])
            script.received.append(self.rfile.read(length))
            status = self._status()
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/obj?X-Amz-Signature=abc", script
    httpd.shutdown()
    httpd.server_close()


async def test_5xx_is_retried_then_succeeds(server: tuple[str, Script]) -> None:
    url, script = server
    script.statuses = [503, 500]
    got = await fetch(url, sha256=hashlib.sha256(BODY).hexdigest(), max_bytes=10_000, retry=FAST)
    assert got == BODY and script.requests == 3


async def test_5xx_until_attempts_run_out(server: tuple[str, Script]) -> None:
    url, script = server
    script.statuses = [503] * 10
    with pytest.raises(TransferFailed) as info:
        await fetch(url, sha256="0" * 64, max_bytes=10_000, retry=FAST)
    assert (info.value.attempts, info.value.status, script.requests) == (4, 503, 4)
    assert "abc" not in str(info.value)


async def test_upload_retries_5xx(server: tuple[str, Script]) -> None:
    url, script = server
    script.statuses = [502]
    await upload(url, b"weights", content_type="application/octet-stream", retry=FAST)
    assert script.received == [b"weights", b"weights"]


async def test_limit_enforced_while_streaming_without_content_length(
    server: tuple[str, Script],
) -> None:
    url, script = server
    script.chunked = True
    with pytest.raises(TooLarge) as info:
        await fetch(url, sha256=hashlib.sha256(BODY).hexdigest(), max_bytes=2500, retry=FAST)
    assert info.value.size > 2500
    got = await fetch(url, sha256=hashlib.sha256(BODY).hexdigest(), max_bytes=5000, retry=FAST)
    assert got == BODY


async def test_connection_refused_is_retried_then_fails() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # Nothing listens on the port now: every attempt is a connection error.
    with pytest.raises(TransferFailed) as info:
        await fetch(f"http://127.0.0.1:{port}/x", sha256="0" * 64, max_bytes=10, retry=FAST)
    assert info.value.attempts == 4 and info.value.status is None


def test_backoff_grows_and_is_capped() -> None:
    policy = RetryPolicy(attempts=10, base_delay_s=0.5, multiplier=2.0, max_delay_s=3.0)
    assert [policy.delay_s(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/x", "http://[::1/x", "not a url"])
async def test_unusable_urls_fail_at_once(url: str) -> None:
    with pytest.raises(TransferFailed) as info:
        await fetch(url, sha256="0" * 64, max_bytes=10, retry=FAST)
    assert info.value.attempts == 1
