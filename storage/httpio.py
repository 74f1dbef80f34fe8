"""The HTTP client used for presigned transfers: httpx on trio, with large socket reads.

httpcore reads at most 64 KiB per socket read, so a 256 MiB download takes ~4000 trips
through h11, httpcore and trio. Its network backend is a public extension point:
``LargeReadBackend`` wraps trio's backend and asks for up to ``READ_BYTES`` per read,
which cuts the per-read overhead; on loopback it streamed faster than httpx's default
(the client shares the CPUs with the S3 server there).
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable
from typing import Any

import httpcore
import httpx

#: Most bytes asked of the socket per read.
READ_BYTES = 1024 * 1024


class _LargeReadStream(httpcore.AsyncNetworkStream):
    """A network stream whose reads ask for at least ``READ_BYTES``."""

    def __init__(self, inner: httpcore.AsyncNetworkStream) -> None:
        self._inner = inner

    # Signatures follow httpcore's AsyncNetworkStream/AsyncNetworkBackend interfaces.
    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:  # noqa: ASYNC109
        return await self._inner.read(max(max_bytes, READ_BYTES), timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:  # noqa: ASYNC109
        await self._inner.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> httpcore.AsyncNetworkStream:
        inner = await self._inner.start_tls(ssl_context, server_hostname, timeout)
        return _LargeReadStream(inner)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class LargeReadBackend(httpcore.AsyncNetworkBackend):
    """httpcore's trio backend, with streams that read up to ``READ_BYTES`` at once."""

    def __init__(self) -> None:
        self._inner = httpcore.TrioBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        """Connect with trio's backend; the stream reads in large blocks."""
        stream = await self._inner.connect_tcp(host, port, timeout, local_address, socket_options)
        return _LargeReadStream(stream)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        """Connect to a Unix socket with trio's backend; the stream reads in large blocks."""
        stream = await self._inner.connect_unix_socket(path, timeout, socket_options)
        return _LargeReadStream(stream)

    async def sleep(self, seconds: float) -> None:
        """Sleep with trio's backend."""
        await self._inner.sleep(seconds)


class LargeReadTransport(httpx.AsyncHTTPTransport):
    """httpx's HTTP transport over ``LargeReadBackend`` (trio only; no env proxies)."""

    def __init__(self, limits: httpx.Limits) -> None:
        super().__init__(limits=limits)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=LargeReadBackend(),
        )
