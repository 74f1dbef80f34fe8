"""One way to declare and validate configuration and specs, on pydantic v2.

A config section or a spec is a plain ``@dataclass`` declared by the module that owns
it; its annotations are the schema. Ranges are written in the annotation
(``Annotated[int, Field(ge=1, le=100)]``); the job spec takes its bounds from
``training.catalogue``. This module turns such a dataclass into a pydantic model
once (cached) and checks untrusted mappings (TOML tables, JSON objects) against it:

- unknown tables and fields are refused and named (``trainer.slotz``);
- types come from the annotation and are strict: ``"1"`` is not 1, ``true`` is not 1,
  a float field accepts an int; NaN and infinities are refused;
- a field that must accept a looser input says so itself
  (``Annotated[Path, Field(strict=False)]``);
- a bare ``int`` or ``float`` field (no range of its own) whose default is not
  negative may not be negative: timeouts, sizes and counts of sections that state
  no bounds keep a safe floor;
- :func:`schema` prints the JSON Schema of any such dataclass.

Errors become the caller's own class, built as ``error(field, reason)`` with the
dotted field (``presence.interval_s``, ``node.listen[0]``), so each package keeps its
error type and callers never see pydantic's. Cross-field rules stay in the owning
module, after :func:`load`.

Why pydantic rather than msgspec: it validates stdlib dataclasses declared elsewhere
without changing them, reads ``Annotated`` constraints, and writes JSON Schema, and
it is already the most widely kept validation library for Python.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable, Mapping
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from distro_errors import DistroError

T = TypeVar("T")
ErrorFactory = Callable[[str, str], DistroError]

STRICT = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)
"""Every schema's pydantic config: unknown fields refused, no coercion, finite floats."""


def model_of(name: str, fields: Mapping[str, tuple[Any, Any]], doc: str = "") -> type[BaseModel]:
    """A strict pydantic model from ``{field: (annotation, default)}``.

    For schemas that are data, not classes (a catalogue model's parameters).
    """
    model: type[BaseModel] = create_model(  # type: ignore[call-overload]
        name, __config__=STRICT, __doc__=doc or None, **fields
    )
    return model


_MODELS: dict[Any, type[BaseModel]] = {}


def _model(cls: Any) -> type[BaseModel]:
    """The strict pydantic model of the dataclass ``cls`` (made once, then reused)."""
    if cls not in _MODELS:
        _MODELS[cls] = _make_model(cls)
    return _MODELS[cls]


def _make_model(cls: Any) -> type[BaseModel]:
    hints = typing.get_type_hints(cls, include_extras=True)
    fields: dict[str, tuple[Any, Any]] = {}
    for f in dataclasses.fields(cls):
        annotation = hints[f.name]
        if isinstance(annotation, type) and dataclasses.is_dataclass(annotation):
            nested = _model(annotation)
            fields[f.name] = (nested, Field(default_factory=nested))
        elif f.default is not dataclasses.MISSING:
            fields[f.name] = (_signed(annotation, f.default), f.default)
        elif f.default_factory is not dataclasses.MISSING:
            fields[f.name] = (annotation, Field(default_factory=f.default_factory))
        else:
            fields[f.name] = (annotation, ...)
    doc = (cls.__doc__ or "").strip().split("\n\n")[0]
    return model_of(cls.__name__, fields, doc)


def _signed(annotation: Any, default: Any) -> Any:
    """A bare ``int``/``float`` whose default is not negative may not be negative."""
    if annotation in (int, float) and not isinstance(default, bool) and default >= 0:
        return Annotated[annotation, Field(ge=0)]
    return annotation


def _where(loc: tuple[int | str, ...], prefix: str) -> str:
    out = prefix
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "<root>"


def _reason(err: Mapping[str, Any]) -> str:
    if err["type"] == "extra_forbidden":
        return "unknown field"
    msg = str(err["msg"])
    if msg.startswith("Input should be "):
        msg = "must be " + msg.removeprefix("Input should be ")
    if err["type"] == "missing":
        return msg.lower()
    value = err["input"]
    # Numbers are echoed; strings and tables only by type, so a secret never reaches a log.
    shown = repr(value) if isinstance(value, int | float | None) else type(value).__name__
    return f"{msg}, got {shown}"


def validate(
    model: type[BaseModel], data: Any, *, error: ErrorFactory, prefix: str = ""
) -> BaseModel:
    """Check ``data`` against ``model``; return the pydantic instance.

    Raises:
        DistroError: ``error(field, reason)`` for the first bad field.
    """
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        raise error(_where(first["loc"], prefix), _reason(first)) from None


def _build(cls: type[T], value: BaseModel) -> T:
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for name in value.model_fields_set:
        item = getattr(value, name)
        values[name] = _build(hints[name], item) if isinstance(item, BaseModel) else item
    return cls(**values)


def load(cls: type[T], data: Any, *, error: ErrorFactory, prefix: str = "") -> T:
    """Build the dataclass ``cls`` from an untrusted mapping, fields left out defaulted.

    Args:
        cls: A dataclass whose annotations are its schema.
        data: The decoded table or object.
        error: Builds the caller's error from ``(dotted field, reason)``.
        prefix: Dotted name of the table, prepended to field names in errors.

    Raises:
        DistroError: ``error(field, reason)``: unknown field, wrong type or out of range.
    """
    return _build(cls, validate(_model(cls), data, error=error, prefix=prefix))


def check(obj: Any, *, error: ErrorFactory, prefix: str = "") -> None:
    """Check an already-built dataclass instance against its own annotations.

    Raises:
        DistroError: ``error(field, reason)`` for the first bad field.
    """
    values = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    for name, value in values.items():
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            values[name] = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    validate(_model(type(obj)), values, error=error, prefix=prefix)


def schema(cls: type) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of the dataclass ``cls``, as a dict."""
    return _model(cls).model_json_schema()
