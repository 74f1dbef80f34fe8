"""The HTTP/1.1 plumbing of the dashboard: h11 over trio streams, nothing app-specific.

One :class:`Request` at a time per connection (keep-alive allowed); the handler
returns a :class:`Response` whose body is bytes or an async iterator of chunks (sent
chunked: server-sent events). Header blocks over ``MAX_HEADER_BYTES``, bodies over
the handler's limit and idle connections are cut off; a malformed request gets a 400
and the connection is closed. Nothing a client sends can end the server.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import h11
import trio

log = logging.getLogger(__name__)

MAX_HEADER_BYTES = 16 * 1024
DRAIN_BYTES = 64 * 1024


class BodyTooLarge(Exception):
    """The request body passed the limit its handler set."""


@dataclass
class Request:
    """One request: method, target (path + query), headers (lower-case names), body."""

    method: str
    target: str
    headers: dict[str, str]
    _conn: h11.Connection
    _stream: trio.abc.Stream
    _read_timeout_s: float
    _done: bool = False

    @property
    def path(self) -> str:
        """The target without its query string."""
        return self.target.partition("?")[0]

    @property
    def query(self) -> str:
        """The query string, without ``?``."""
        return self.target.partition("?")[2]

    async def chunks(self, limit: int) -> AsyncIterator[bytes]:
        """Yield the body's chunks; raise :class:`BodyTooLarge` past ``limit`` bytes."""
        seen = 0
        while not self._done:
            event = await _next_event(self._conn, self._stream, self._read_timeout_s)
            if isinstance(event, h11.Data):
                seen += len(event.data)
                if seen > limit:
                    raise BodyTooLarge(limit)
                yield bytes(event.data)
            elif isinstance(event, h11.EndOfMessage):
                self._done = True
            else:
                raise h11.RemoteProtocolError("connection closed mid-body")

    async def body(self, limit: int) -> bytes:
        """The whole body; raise :class:`BodyTooLarge` past ``limit`` bytes."""
        return b"".join([c async for c in self.chunks(limit)])


@dataclass
class Response:
    """What a handler answers. ``body`` bytes get a Content-Length; an iterator is chunked."""

    status: int
    body: bytes | AsyncIterator[bytes] = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: list[tuple[str, str]] = field(default_factory=list)


Handler = Callable[[Request], Awaitable[Response]]


class _Idle(Exception):
    """The client sent nothing for the read timeout."""


async def _next_event(conn: h11.Connection, stream: trio.abc.Stream, timeout_s: float) -> object:
    while True:
        event = conn.next_event()
        if event is not h11.NEED_DATA:
            return event
        with trio.move_on_after(timeout_s):
            data = await stream.receive_some(65536)
            conn.receive_data(bytes(data))
            continue
        raise _Idle


async def serve_connection(
    stream: trio.abc.Stream,
    handler: Handler,
    common_headers: list[tuple[str, str]],
    read_timeout_s: float,
) -> None:
    """Serve requests on ``stream`` until the client closes, misbehaves or idles out."""
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEADER_BYTES)
    try:
        while True:
            try:
                event = await _next_event(conn, stream, read_timeout_s)
            except h11.RemoteProtocolError as exc:
                await _send_error(conn, stream, exc.error_status_hint, common_headers)
                return
            if not isinstance(event, h11.Request):
                return  # ConnectionClosed, or nothing sensible to answer
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in event.headers}
            request = Request(event.method.decode("ascii", "replace"),
                              event.target.decode("ascii", "replace"), headers,
                              conn, stream, read_timeout_s)
            try:
                response = await handler(request)
            except BodyTooLarge as exc:
                response = Response(413, f"request body over {exc.args[0]} bytes\n".encode())
            if not request._done:
                # An unread body (a refused request): skip a small one so the connection
                # stays usable; past DRAIN_BYTES, answer and close it.
                try:
                    async for _chunk in request.chunks(DRAIN_BYTES):
                        pass
                except BodyTooLarge:
                    response.headers.append(("connection", "close"))
            await _send(conn, stream, response, common_headers)
            if not request._done:
                return
            if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                return
            conn.start_next_cycle()
    except (_Idle, h11.RemoteProtocolError, h11.LocalProtocolError):
        return
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        log.debug("web client went away")


async def _send(conn: h11.Connection, stream: trio.abc.Stream, response: Response,
                common: list[tuple[str, str]]) -> None:
    headers = [*common, *response.headers, ("content-type", response.content_type)]
    if isinstance(response.body, bytes):
        headers.append(("content-length", str(len(response.body))))
    await stream.send_all(conn.send(h11.Response(status_code=response.status, headers=headers)))
    if isinstance(response.body, bytes):
        if response.body:
            await stream.send_all(conn.send(h11.Data(data=response.body)))
    else:
        async for chunk in response.body:
            await stream.send_all(conn.send(h11.Data(data=chunk)))
    await stream.send_all(conn.send(h11.EndOfMessage()))


async def _send_error(conn: h11.Connection, stream: trio.abc.Stream, status: int,
                      common: list[tuple[str, str]]) -> None:
    if conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
        return
    try:
        await _send(conn, stream, Response(status, b"bad request\n"), common)
    except (h11.LocalProtocolError, trio.BrokenResourceError, trio.ClosedResourceError):
        pass
