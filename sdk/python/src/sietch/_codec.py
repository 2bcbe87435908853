"""JSON to dataclasses and back, driven by the dataclasses' type hints.

Decoding checks what the server sent at the edge, once: a missing required
field or a value of the wrong type is a ProtocolError naming the field;
fields the SDK does not know are ignored (a newer sietchd may add some).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import types
import typing
from datetime import datetime
from typing import Any, TypeVar

from .errors import ProtocolError

T = TypeVar("T")


def json_name(f: dataclasses.Field[Any]) -> str:
    """The JSON property a dataclass field stands for (``from_`` → ``from``)."""
    name: str = f.metadata.get("json", f.name)
    return name


_hints_cache: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    hints = _hints_cache.get(cls)
    if hints is None:
        hints = _hints_cache[cls] = typing.get_type_hints(cls)
    return hints


def decode(cls: type[T], value: Any, where: str = "") -> T:
    """Build a ``cls`` dataclass from a decoded JSON object."""
    where = where or cls.__name__
    if not isinstance(value, dict):
        raise ProtocolError(f"{where}: want a JSON object, got {_kind(value)}")
    hints = _hints(cls)
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        name = json_name(f)
        if name not in value or value[name] is None:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ProtocolError(f"{where}: the required field {name!r} is missing")
            continue
        kwargs[f.name] = _convert(hints[f.name], value[name], f"{where}.{name}")
    return cls(**kwargs)


def _convert(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) != 1:
            raise TypeError(f"{where}: unions other than X | None are not supported")
        return _convert(args[0], value, where)
    if origin is list:
        if not isinstance(value, list):
            raise ProtocolError(f"{where}: want a JSON array, got {_kind(value)}")
        (item,) = typing.get_args(tp)
        return [_convert(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ProtocolError(f"{where}: want a JSON object, got {_kind(value)}")
        _, item = typing.get_args(tp)
        return {str(k): _convert(item, v, f"{where}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        return decode(tp, value, where)
    if tp is bool:
        if not isinstance(value, bool):
            raise ProtocolError(f"{where}: want a boolean, got {_kind(value)}")
        return value
    if tp is int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise ProtocolError(f"{where}: want an integer, got {_kind(value)}")
        return value
    if tp is float:
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise ProtocolError(f"{where}: want a number, got {_kind(value)}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ProtocolError(f"{where}: want a string, got {_kind(value)}")
        return value
    if tp is bytes:
        if not isinstance(value, str):
            raise ProtocolError(f"{where}: want a base64 string, got {_kind(value)}")
        try:
            return base64.b64decode(value, validate=True)
        except binascii.Error as e:
            raise ProtocolError(f"{where}: bad base64: {e}") from None
    if tp is datetime:
        if not isinstance(value, str):
            raise ProtocolError(f"{where}: want a date-time string, got {_kind(value)}")
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            raise ProtocolError(f"{where}: bad date-time {value[:40]!r}") from None
    if tp is Any:
        return value
    raise TypeError(f"{where}: no JSON conversion for {tp!r}")


def encode(obj: Any) -> Any:
    """The JSON value of a request dataclass; None fields are left out."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out: dict[str, Any] = {}
        for f in dataclasses.fields(obj):
            v = getattr(obj, f.name)
            if v is not None:
                out[json_name(f)] = encode(v)
        return out
    if isinstance(obj, bytes):
        return base64.b64encode(obj).decode("ascii")
    if isinstance(obj, datetime):
        return obj.isoformat()
    if isinstance(obj, list):
        return [encode(v) for v in obj]
    if isinstance(obj, dict):
        return {str(k): encode(v) for k, v in obj.items()}
    return obj


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}.get(
        type(value), type(value).__name__
    )
