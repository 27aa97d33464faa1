"""One JSON form for every record the cache holds, derived from the types.

A frozen dataclass is a JSON object whose keys are its field names in
camelCase; the values follow the field's annotation: text, numbers and
booleans as they are, addresses, networks, interfaces and MACs as their usual
text, bytes as hex, an enum as its lower-case name, a tuple as a list, None as
null. `decode` is the exact inverse, and strict: a key the type does not have,
a missing key without a default, or a value of the wrong shape is a
`CacheError` that names the key path; the dataclass's own checks run too, so
a record that decodes is one the code could have built.

Adding a field to a cached type is one edit (the field); a default makes
records written before it still readable.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import ipaddress
import types
import typing
from collections.abc import Callable
from typing import Any, TypeVar

from vmnet.core.addr import MacAddress
from vmnet.core.errors import CacheError, ConfigError

T = TypeVar("T")
JSON = Any

_TEXT_TYPES: dict[type, Callable[[str], Any]] = {
    MacAddress: MacAddress.parse,
    ipaddress.IPv4Address: ipaddress.IPv4Address,
    ipaddress.IPv6Address: ipaddress.IPv6Address,
    ipaddress.IPv4Interface: ipaddress.IPv4Interface,
    ipaddress.IPv6Interface: ipaddress.IPv6Interface,
    ipaddress.IPv4Network: ipaddress.IPv4Network,
    ipaddress.IPv6Network: ipaddress.IPv6Network,
}
# a union of the v4 and v6 type is parsed by the version-agnostic parser
_EITHER: dict[frozenset[type], Callable[[str], Any]] = {
    frozenset({ipaddress.IPv4Address, ipaddress.IPv6Address}): ipaddress.ip_address,
    frozenset({ipaddress.IPv4Interface, ipaddress.IPv6Interface}): ipaddress.ip_interface,
    frozenset({ipaddress.IPv4Network, ipaddress.IPv6Network}): ipaddress.ip_network,
}


def camel(name: str) -> str:
    """`pod_nic` -> `podNic`."""
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


def encode(value: Any) -> JSON:
    """The JSON form of a cached value (a dataclass, or anything inside one)."""
    if value is None or (isinstance(value, (bool, int, str)) and not isinstance(value, enum.Enum)):
        return value
    if isinstance(value, enum.Enum):
        return value.name.lower()
    if isinstance(value, bytes):
        return value.hex()
    if type(value) in _TEXT_TYPES:
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {camel(f.name): encode(getattr(value, f.name)) for f in _fields(type(value))}
    if isinstance(value, (tuple, list)):
        return [encode(item) for item in value]
    if isinstance(value, dict):
        return {str(k): encode(v) for k, v in value.items()}
    raise TypeError(f"no JSON form for {type(value).__name__}")


def decode(tp: type[T] | Any, obj: JSON, path: str = "") -> T:
    """Rebuild a value of type `tp` from `encode`'s output.

    Raises:
        CacheError: `obj` is not that form; the message names the key path.
    """
    try:
        return _decode(tp, obj, path)  # type: ignore[no-any-return]
    except _Bad as bad:
        where = f"key {bad.path!r}" if bad.path else "record"
        raise CacheError(f"{where}: {bad.why}") from None


class _Bad(Exception):
    def __init__(self, path: str, why: str) -> None:
        super().__init__(path, why)
        self.path, self.why = path, why


def _decode(tp: Any, obj: JSON, path: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return _union(typing.get_args(tp), obj, path)
    if origin is tuple:
        return _tuple(typing.get_args(tp), obj, path)
    if origin is dict:
        key_tp, value_tp = typing.get_args(tp)
        if not isinstance(obj, dict):
            raise _Bad(path, f"expected an object, got {_shown(obj)}")
        return {
            _decode(key_tp, k, path): _decode(value_tp, v, f"{path}.{k}") for k, v in obj.items()
        }
    if tp is type(None):
        if obj is not None:
            raise _Bad(path, f"expected null, got {_shown(obj)}")
        return None
    if tp is bool or tp is str:
        if type(obj) is not tp:
            raise _Bad(
                path, f"expected {'true or false' if tp is bool else 'a string'}, got {_shown(obj)}"
            )
        return obj
    if tp is int:
        if type(obj) is not int:
            raise _Bad(path, f"expected an integer, got {_shown(obj)}")
        return obj
    if tp is bytes:
        if not isinstance(obj, str):
            raise _Bad(path, f"expected hex text, got {_shown(obj)}")
        return _parse(bytes.fromhex, obj, path)
    if tp in _TEXT_TYPES:
        return _text(_TEXT_TYPES[tp], tp, obj, path)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        names = {member.name.lower(): member for member in tp}
        if obj not in names:
            raise _Bad(path, f"expected one of {', '.join(names)}, got {_shown(obj)}")
        return names[obj]
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _dataclass(tp, obj, path)
    raise TypeError(f"no JSON form for {tp!r}")


def _union(members: tuple[Any, ...], obj: JSON, path: str) -> Any:
    rest = tuple(m for m in members if m is not type(None))
    if obj is None and len(rest) < len(members):
        return None
    either = _EITHER.get(frozenset(rest))
    if either is not None:
        return _text(either, rest[0], obj, path)
    if len(rest) == 1:
        return _decode(rest[0], obj, path)
    errors = []
    for member in rest:
        try:
            return _decode(member, obj, path)
        except _Bad as bad:
            errors.append(bad.why)
    raise _Bad(path, " or ".join(errors))


def _tuple(args: tuple[Any, ...], obj: JSON, path: str) -> tuple[Any, ...]:
    if not isinstance(obj, list):
        raise _Bad(path, f"expected a list, got {_shown(obj)}")
    if len(args) == 2 and args[1] is Ellipsis:
        return tuple(_decode(args[0], item, f"{path}[{i}]") for i, item in enumerate(obj))
    if len(obj) != len(args):
        raise _Bad(path, f"expected a list of {len(args)}, got {_shown(obj)}")
    return tuple(
        _decode(a, item, f"{path}[{i}]") for i, (a, item) in enumerate(zip(args, obj, strict=True))
    )


def _dataclass(tp: type, obj: JSON, path: str) -> Any:
    if not isinstance(obj, dict):
        raise _Bad(path, f"expected an object, got {_shown(obj)}")
    hints = _hints(tp)
    keys = {camel(f.name): f for f in _fields(tp)}
    for key in obj:
        if key not in keys:
            raise _Bad(_join(path, key), "unknown key")
    kwargs = {}
    for key, f in keys.items():
        if key in obj:
            kwargs[f.name] = _decode(hints[f.name], obj[key], _join(path, key))
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise _Bad(_join(path, key), "missing")
    try:
        return tp(**kwargs)
    except ConfigError as err:
        raise _Bad(_join(path, camel(err.field)), err.cause) from None
    except (ValueError, TypeError) as err:
        raise _Bad(path or tp.__name__, str(err)) from None


def _text(parse: Callable[[str], Any], tp: type, obj: JSON, path: str) -> Any:
    if not isinstance(obj, str):
        raise _Bad(path, f"expected text, got {_shown(obj)}")
    if tp in (ipaddress.IPv4Interface, ipaddress.IPv6Interface) and "/" not in obj:
        raise _Bad(path, f"expected address/prefix length, got {_shown(obj)}")
    return _parse(parse, obj, path)


def _parse(parse: Callable[[str], Any], text: str, path: str) -> Any:
    try:
        return parse(text)
    except ValueError as err:
        raise _Bad(path, str(err)) from None


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _shown(obj: JSON) -> str:
    text = repr(obj)
    return text if len(text) <= 40 else text[:37] + "..."


@functools.cache
def _fields(tp: type) -> tuple[dataclasses.Field[Any], ...]:
    return tuple(f for f in dataclasses.fields(tp) if f.init)


@functools.cache
def _hints(tp: type) -> dict[str, Any]:
    return typing.get_type_hints(tp)
