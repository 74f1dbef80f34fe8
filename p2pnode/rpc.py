"""JSON-RPC 2.0: the route table and the dispatcher (pure: bytes in, bytes out).

Other packages add methods to the one table every daemon owns (``node.routes``)::

    node.routes.add("jobs.submit", handle_submit, required={"spec": dict},
                    optional={"dry_run": bool}, doc="Submit a job.")

A handler is ``async def handler(params: dict[str, Any]) -> Any`` returning a JSON-able
value; it raises :class:`RpcError` (or :class:`InvalidParams`) for an answer other than
-32603. Parameters are by name only (a JSON object, or omitted).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import trio

import distro_json

log = logging.getLogger(__name__)

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603

MAX_DEPTH = 32
"""Deepest nesting of arrays and objects a request may have; deeper is -32600."""

Handler = Callable[[dict[str, Any]], Awaitable[Any]]


class RpcError(Exception):
    """An error answer: ``code`` and ``message`` go to the caller, ``data`` too if set."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data


class InvalidParams(RpcError):
    """A -32602 answer naming the bad parameter."""

    def __init__(self, param: str, reason: str) -> None:
        super().__init__(INVALID_PARAMS, f"invalid params: {param}: {reason}", {"param": param})


@dataclass(frozen=True)
class Route:
    """One method: its handler and the types of its named parameters."""

    handler: Handler
    required: Mapping[str, type | tuple[type, ...]] = field(default_factory=dict)
    optional: Mapping[str, type | tuple[type, ...]] = field(default_factory=dict)
    doc: str = ""

    def check(self, params: dict[str, Any]) -> None:
        """Raise InvalidParams for a missing, unknown or mistyped parameter."""
        for name in self.required:
            if name not in params:
                raise InvalidParams(name, "missing")
        for name, value in params.items():
            typ = self.required.get(name, self.optional.get(name))
            if typ is None:
                raise InvalidParams(name, "unknown parameter")
            if isinstance(value, bool) and typ in (int, float):
                raise InvalidParams(name, "expected a number")
            if not isinstance(value, typ):
                raise InvalidParams(name, f"expected {_type_name(typ)}")


def _type_name(typ: type | tuple[type, ...]) -> str:
    if isinstance(typ, tuple):
        return " or ".join(t.__name__ for t in typ)
    return typ.__name__


class Routes:
    """The route table: method name -> :class:`Route`. Names are unique."""

    def __init__(self) -> None:
        self._routes: dict[str, Route] = {}

    def add(
        self,
        method: str,
        handler: Handler,
        *,
        required: Mapping[str, type | tuple[type, ...]] | None = None,
        optional: Mapping[str, type | tuple[type, ...]] | None = None,
        doc: str = "",
    ) -> None:
        """Register ``method``; raises ValueError if the name is taken."""
        if method in self._routes:
            raise ValueError(f"route {method!r} already registered")
        self._routes[method] = Route(handler, dict(required or {}), dict(optional or {}), doc)

    def wrap(self, method: str, wrapper: Callable[[Handler], Handler]) -> None:
        """Replace ``method``'s handler by ``wrapper(handler)``; parameters and doc stay."""
        route = self._routes[method]
        self._routes[method] = dataclasses.replace(route, handler=wrapper(route.handler))

    def names(self) -> list[str]:
        """Return the registered method names, sorted."""
        return sorted(self._routes)

    def get(self, method: str) -> Route | None:
        """Return the route for ``method`` or None."""
        return self._routes.get(method)


def _error(id_: Any, code: int, message: str, data: Any = None) -> dict[str, Any]:
    err: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        err["data"] = data
    return {"jsonrpc": "2.0", "id": id_, "error": err}


def error_line(code: int, message: str) -> bytes:
    """Return an encoded error response with ``id: null`` (for framing failures)."""
    return json.dumps(_error(None, code, message)).encode() + b"\n"


async def dispatch(routes: Routes, line: bytes) -> bytes | None:
    """Answer one request line; return the encoded response line, or None for a notification.

    Never raises for bad input: every failure becomes an error response. A request
    nested deeper than ``MAX_DEPTH`` is refused (-32600) before any handler sees it,
    so no handler or encoder can recurse on it. A handler's unexpected exception is
    logged and answered with -32603; ``trio.Cancelled`` passes.
    """
    try:
        req = distro_json.loads(line, max_depth=MAX_DEPTH)
    except distro_json.TooDeep:
        return error_line(INVALID_REQUEST, f"invalid request: nested deeper than {MAX_DEPTH}")
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return error_line(PARSE_ERROR, f"parse error: {exc}")
    if _depth_over(req, MAX_DEPTH):
        return error_line(INVALID_REQUEST, f"invalid request: nested deeper than {MAX_DEPTH}")
    if not isinstance(req, dict):
        return error_line(INVALID_REQUEST, "invalid request: expected a JSON object")
    id_ = req.get("id")
    valid_id = id_ is None or isinstance(id_, str | int) and not isinstance(id_, bool)
    if "id" in req and not valid_id:
        return error_line(INVALID_REQUEST, "invalid request: id must be a string, number or null")
    method, params = req.get("method"), req.get("params", {})
    if req.get("jsonrpc") != "2.0" or not isinstance(method, str):
        resp = _error(id_, INVALID_REQUEST, "invalid request: need jsonrpc '2.0' and a method")
        return json.dumps(resp).encode() + b"\n"
    resp = await _call(routes, id_, method, params)
    if "id" not in req:
        return None
    try:
        return json.dumps(resp, default=str).encode() + b"\n"
    except (ValueError, TypeError, RecursionError):
        log.exception("control method %s returned a value that is not JSON", method)
        failed = _error(id_, INTERNAL_ERROR, f"internal error in {method}")
        return json.dumps(failed).encode() + b"\n"


def _depth_over(value: Any, limit: int) -> bool:
    """Whether ``value`` nests arrays/objects deeper than ``limit`` (iterative, no recursion)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


async def _call(routes: Routes, id_: Any, method: str, params: Any) -> dict[str, Any]:
    route = routes.get(method)
    if route is None:
        return _error(id_, METHOD_NOT_FOUND, f"method not found: {method}")
    if not isinstance(params, dict):
        return _error(id_, INVALID_PARAMS, "invalid params: must be an object (by name)")
    try:
        route.check(params)
        result = await route.handler(params)
    except RpcError as exc:
        return _error(id_, exc.code, exc.message, exc.data)
    except trio.Cancelled:
        raise
    except Exception:  # task boundary of one request: log it, answer -32603
        log.exception("control method %s failed", method)
        return _error(id_, INTERNAL_ERROR, f"internal error in {method}")
    return {"jsonrpc": "2.0", "id": id_, "result": result}
