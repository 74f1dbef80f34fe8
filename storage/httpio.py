"""The HTTP client stack for presigned transfers: httpx on trio, policed and fast.

Two things happen at the connection layer, below httpx, through httpcore's public
network-backend interface:

- Address policy. A trainer fetches URLs that a stranger (the job's owner) chose.
  ``PolicedBackend`` resolves the host itself, checks EVERY address it resolves to
  against an ``AddressPolicy`` and connects to a checked address, never to the name.
  It does so on every new connection, so a DNS answer that changes between two
  connections (rebinding) gains nothing. Loopback, link-local, private, shared
  (CGNAT), multicast, reserved and unspecified addresses are refused unless the
  policy allows their network; IPv4-mapped IPv6 addresses are judged as IPv4.
- Large reads. httpcore reads at most 64 KiB per socket read, so a 256 MiB download
  takes ~4000 trips through h11, httpcore and trio; streams here ask for up to
  ``READ_BYTES`` per read (faster on loopback, where the client shares the CPUs with
  the S3 server).

``PolicedTransport`` is an ``httpx.AsyncBaseTransport`` over an
``httpcore.AsyncConnectionPool`` using that backend, mapping httpcore's errors to
httpx's as httpx's own transport does. A refused address raises ``ForbiddenAddress``
from inside the request; ``storage.retry.retry_transfer`` turns it into ``UrlForbidden``.
``new_client`` builds the ``httpx.AsyncClient`` every transfer uses.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import httpcore
import httpx
import trio

#: Most bytes asked of the socket per read.
READ_BYTES = 1024 * 1024

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class ForbiddenAddress(Exception):
    """A host is, or resolves to, an address the policy forbids.

    Attributes:
        host: the host as the request named it.
        address: the first forbidden address among those it resolved to.
    """

    def __init__(self, host: str, address: str) -> None:
        super().__init__(f"{host!r} resolves to forbidden address {address}")
        self.host = host
        self.address = address


class AddressPolicy:
    """Which remote addresses a client may connect to.

    Args:
        allow: CIDR networks allowed even though they are not public
            (``["127.0.0.0/8", "::1/128"]`` for a single-machine run).
        open: allow every address (the owner's client, talking to its own storage).

    Raises:
        ValueError: an entry of ``allow`` is not a network.
    """

    def __init__(self, allow: Sequence[str] = (), *, open: bool = False) -> None:
        self.allow: tuple[Network, ...] = tuple(
            ipaddress.ip_network(n, strict=False) for n in allow
        )
        self.open = open

    def permits(self, address: Address) -> bool:
        """Whether connecting to ``address`` is allowed."""
        if self.open:
            return True
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if any(address in net for net in self.allow if net.version == address.version):
            return True
        return address.is_global and not (
            address.is_multicast
            or address.is_private
            or address.is_loopback
            or address.is_link_local
            or address.is_reserved
            or address.is_unspecified
        )


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


class PolicedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's trio backend that checks every address it connects to.

    Args:
        policy: the addresses allowed.
    """

    def __init__(self, policy: AddressPolicy) -> None:
        self._inner = httpcore.TrioBackend()
        self.policy = policy

    async def _resolve(self, host: str, port: int, timeout: float | None) -> list[str]:  # noqa: ASYNC109
        try:
            return [str(ipaddress.ip_address(host.strip("[]")))]
        except ValueError:
            pass
        with trio.move_on_after(timeout if timeout is not None else float("inf")) as scope:
            try:
                infos = await trio.socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            except OSError as exc:
                raise httpcore.ConnectError(f"cannot resolve {host!r}: {exc}") from exc
        if scope.cancelled_caught:
            raise httpcore.ConnectTimeout(f"resolving {host!r} timed out")
        return list(dict.fromkeys(str(info[4][0]) for info in infos))

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        """Resolve ``host``, refuse it if any address is forbidden, connect to one.

        Raises:
            ForbiddenAddress: an address ``host`` resolves to is not allowed.
            httpcore.ConnectError: resolution failed or no address answered.
        """
        addresses = await self._resolve(host, port, timeout)
        for address in addresses:
            if not self.policy.permits(ipaddress.ip_address(address.split("%")[0])):
                raise ForbiddenAddress(host, address)
        last: Exception = httpcore.ConnectError(f"{host!r} resolved to no address")
        for address in addresses:
            try:
                stream = await self._inner.connect_tcp(
                    address, port, timeout, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc
                continue
            return _LargeReadStream(stream)
        raise last

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        """Refused: a URL never names a Unix socket."""
        raise ForbiddenAddress(path, "unix socket")

    async def sleep(self, seconds: float) -> None:
        """Sleep with trio's backend."""
        await self._inner.sleep(seconds)


_SAME_NAMED = ("ConnectTimeout", "ReadTimeout", "WriteTimeout", "PoolTimeout", "TimeoutException",
               "ConnectError", "ReadError", "WriteError", "NetworkError", "UnsupportedProtocol",
               "LocalProtocolError", "RemoteProtocolError", "ProtocolError")
"""httpcore's errors and the httpx errors of the same name, most specific first."""
_ERRORS: tuple[tuple[type[Exception], type[httpx.TransportError]], ...] = tuple(
    (getattr(httpcore, name), getattr(httpx, name)) for name in _SAME_NAMED)


@contextmanager
def _httpx_errors() -> Iterator[None]:
    """Re-raise httpcore's errors as httpx's (what callers and retries expect)."""
    try:
        yield
    except Exception as exc:
        for source, target in _ERRORS:
            if isinstance(exc, source):
                raise target(str(exc)) from exc
        raise


class _ResponseStream(httpx.AsyncByteStream):
    def __init__(self, inner: AsyncIterator[bytes] | Any) -> None:
        self._inner = inner

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _httpx_errors():
            async for part in self._inner:
                yield part

    async def aclose(self) -> None:
        if hasattr(self._inner, "aclose"):
            await self._inner.aclose()


class PolicedTransport(httpx.AsyncBaseTransport):
    """An httpx transport over ``PolicedBackend`` (trio only; no proxies).

    Args:
        limits: connection pool limits.
        policy: the addresses connections may go to.
    """

    def __init__(self, limits: httpx.Limits, policy: AddressPolicy) -> None:
        self._limits, self._policy = limits, policy
        self._plain = self._new_pool(None)
        # The TLS pool, made on the first https URL: loading the CA bundle costs
        # about 7 MB of memory, which a daemon whose storage speaks plain http (a
        # local S3 server, the demo) never needs.
        self._tls: httpcore.AsyncConnectionPool | None = None

    def _new_pool(self, ssl_context: ssl.SSLContext | None) -> httpcore.AsyncConnectionPool:
        return httpcore.AsyncConnectionPool(
            ssl_context=ssl_context,
            max_connections=self._limits.max_connections,
            max_keepalive_connections=self._limits.max_keepalive_connections,
            keepalive_expiry=self._limits.keepalive_expiry,
            network_backend=PolicedBackend(self._policy),
        )

    def _pool_for(self, scheme: bytes) -> httpcore.AsyncConnectionPool:
        if scheme != b"https":
            return self._plain
        if self._tls is None:
            self._tls = self._new_pool(httpx.create_ssl_context())
        return self._tls

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` through the policed pool."""
        core = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=request.url.raw_scheme,
                host=request.url.raw_host,
                port=request.url.port,
                target=request.url.raw_path,
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        with _httpx_errors():
            response = await self._pool_for(core.url.scheme).handle_async_request(core)
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_ResponseStream(response.stream),
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        """Close every pooled connection."""
        await self._plain.aclose()
        if self._tls is not None:
            await self._tls.aclose()


DEFAULT_CONNECT_TIMEOUT_S = 10.0
#: Longest silence tolerated while reading or writing a body.
DEFAULT_IO_TIMEOUT_S = 60.0
DEFAULT_MAX_CONNECTIONS = 8

#: The policy of a client made without one: any address (the caller's own storage).
OPEN_POLICY = AddressPolicy(open=True)


def new_client(
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
    connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
    io_timeout_s: float = DEFAULT_IO_TIMEOUT_S,
    *,
    policy: AddressPolicy = OPEN_POLICY,
) -> httpx.AsyncClient:
    """Return an ``httpx.AsyncClient`` suited to presigned transfers (close it after use).

    It runs under trio only, reads the socket in large blocks, connects only to
    addresses ``policy`` allows (checked on every connection, as above),
    follows no redirects and uses no proxy from the environment. Pass a strict policy
    (``AddressPolicy()``) for URLs that someone else chose.
    """
    limits = httpx.Limits(
        max_connections=max_connections, max_keepalive_connections=max_connections
    )
    return httpx.AsyncClient(
        timeout=httpx.Timeout(io_timeout_s, connect=connect_timeout_s),
        transport=PolicedTransport(limits, policy),
        follow_redirects=False,
    )
