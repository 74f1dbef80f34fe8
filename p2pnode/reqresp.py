"""One request, one response on a fresh libp2p stream, length-prefixed and size-limited.

Wire format: the dialer writes a 4-byte big-endian length then that many request bytes;
the listener answers the same way and closes the stream. A frame above the reader's
limit is refused before it is read (the stream is reset). Every wait has a timeout.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Awaitable, Callable

import trio
from libp2p.abc import IHost, INetStream
from libp2p.custom_types import TProtocol
from libp2p.io.exceptions import IOException
from libp2p.peer.id import ID

from p2pnode.errors import RequestError

log = logging.getLogger(__name__)

RequestHandler = Callable[[bytes, ID], Awaitable[bytes]]
"""``async handler(request: bytes, from_peer: ID) -> response bytes``."""

_LEN = struct.Struct(">I")


class FrameError(Exception):
    """A frame that is too large or cut short."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


async def _read_exact(stream: INetStream, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        try:
            chunk = await stream.read(n - len(buf))
        except EOFError:
            # py-libp2p raises StreamEOF (an EOFError) instead of returning b"":
            # see docs/libp2p.md#stream-eof
            raise FrameError("closed") from None
        if not chunk:
            raise FrameError("closed")
        buf += chunk
    return bytes(buf)


async def read_frame(stream: INetStream, max_bytes: int) -> bytes:
    """Read one length-prefixed frame of at most ``max_bytes``.

    Raises:
        FrameError: ``too_large`` or ``closed``.
    """
    (size,) = _LEN.unpack(await _read_exact(stream, _LEN.size))
    if size > max_bytes:
        raise FrameError("too_large")
    return await _read_exact(stream, size)


async def write_frame(stream: INetStream, data: bytes) -> None:
    """Write ``data`` as one length-prefixed frame."""
    await stream.write(_LEN.pack(len(data)) + data)


def make_stream_handler(
    handler: RequestHandler, max_bytes: int, timeout_s: float, close_timeout_s: float
) -> Callable[[INetStream], Awaitable[None]]:
    """Wrap ``handler`` as a libp2p stream handler: read, answer, close; never raise.

    The exchange gets ``timeout_s``; resetting a failed stream gets ``close_timeout_s``
    more, shielded from cancellation.
    """

    async def on_stream(stream: INetStream) -> None:
        peer = stream.muxed_conn.peer_id
        ok = False
        try:
            with trio.fail_after(timeout_s):
                request = await read_frame(stream, max_bytes)
                response = await handler(request, peer)
                if len(response) > max_bytes:
                    raise FrameError("too_large")
                await write_frame(stream, response)
                await stream.close()
                ok = True
        except (FrameError, IOException, trio.TooSlowError) as exc:
            log.debug("request from %s refused: %r", peer, exc)
        except Exception:  # task boundary: a handler bug must not kill the daemon
            log.exception("request handler failed for peer %s", peer)
        finally:
            if not ok:
                with trio.move_on_after(close_timeout_s), trio.CancelScope(shield=True):
                    await _reset_quietly(stream)

    return on_stream


async def _reset_quietly(stream: INetStream) -> None:
    try:
        await stream.reset()
    except Exception:  # noqa: BLE001 - the stream is being discarded; nothing to report
        log.debug("stream reset failed", exc_info=True)


async def _close_quietly(stream: INetStream) -> None:
    try:
        await stream.close()
    except Exception:  # noqa: BLE001 - the stream is being discarded; nothing to report
        log.debug("stream close failed", exc_info=True)


async def request(
    host: IHost, peer_id: ID, protocol_id: str, data: bytes, *, timeout_s: float,
    max_bytes: int, close_timeout_s: float,
) -> bytes:
    """Send ``data`` to ``peer_id`` on a fresh stream and return the response.

    The exchange gets ``timeout_s``; closing the stream gets ``close_timeout_s`` more,
    shielded from cancellation.

    Raises:
        RequestError: ``too_large`` (our request or its response exceeds
            ``max_bytes``), ``timeout``, ``dial`` (no stream) or ``closed`` (stream
            broke, or the peer refused, e.g. our request exceeded *its* limit).
    """
    who = peer_id.to_base58()
    if len(data) > max_bytes:
        raise RequestError(who, protocol_id, "too_large", f"{len(data)} > {max_bytes}")
    stream: INetStream | None = None
    try:
        with trio.fail_after(timeout_s):
            try:
                stream = await host.new_stream(peer_id, [TProtocol(protocol_id)])
            except Exception as exc:  # noqa: BLE001 - the library raises many dial errors
                raise RequestError(who, protocol_id, "dial", repr(exc)) from None
            await write_frame(stream, data)
            return await read_frame(stream, max_bytes)
    except trio.TooSlowError:
        raise RequestError(who, protocol_id, "timeout", f"after {timeout_s}s") from None
    except FrameError as exc:
        raise RequestError(who, protocol_id, exc.reason) from None
    except IOException as exc:
        raise RequestError(who, protocol_id, "closed", repr(exc)) from None
    finally:
        if stream is not None:
            with trio.move_on_after(close_timeout_s), trio.CancelScope(shield=True):
                await _close_quietly(stream)
