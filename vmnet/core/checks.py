"""Rebuilding frozen config dataclasses from their cached JSON.

Rules:
1. A cached record is untrusted input. Every problem (not an object, an
unknown or missing key, a value its converter or the dataclass refuses) is
one `CacheError` naming the record and the key; nothing else escapes.
2. The field checks (`typed`, `ranged`, `tuple_of`) raise `ConfigError`
   naming the field; `check_fields` runs them when a config is built.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import fields
from typing import Any, TypeVar

from vmnet.core.errors import CacheError, ConfigError, VmnetError

T = TypeVar("T")


def from_json(
    cls: type[T],
    obj: object,
    what: str,
    required: Iterable[str],
    converters: Mapping[str, Callable[[Any], Any]],
) -> T:
    """Build `cls` from `obj`, converting each key with `converters[key]`."""
    if not isinstance(obj, dict):
        raise CacheError(f"{what}: expected an object, got {type(obj).__name__}")
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    for key in obj:
        if key not in known:
            raise CacheError(f"{what} key {key!r}: unknown key")
    for key in required:
        if key not in obj:
            raise CacheError(f"{what} key {key!r}: missing")
    kwargs: dict[str, Any] = {}
    for key, value in obj.items():
        try:
            kwargs[key] = converters[key](value)
        except (VmnetError, ValueError, TypeError, AttributeError, KeyError) as err:
            raise CacheError(f"{what} key {key!r}: {err}") from err
    try:
        return cls(**kwargs)
    except ConfigError as err:
        raise CacheError(f"{what} key {err.field!r}: {err.cause}") from err


def check_fields(obj: object, checks: Mapping[str, Callable[[str, Any], Any]]) -> None:
    """Run each field's check in a frozen dataclass's `__post_init__`; a check
    may return a normalised value (a list becomes a tuple), which is stored."""
    for name, check in checks.items():
        value = check(name, getattr(obj, name))
        if value is not getattr(obj, name):
            object.__setattr__(obj, name, value)


def typed(kind: type, *, optional: bool = False) -> Callable[[str, Any], Any]:
    """A check: an instance of `kind` (never a bool for an int), or None if optional."""

    def check(name: str, value: Any) -> Any:
        if value is None and optional:
            return None
        if not isinstance(value, kind) or isinstance(value, bool):
            raise ConfigError(name, f"expected {kind.__name__}, got {value!r}")
        return value

    return check


def ranged(low: int, high: int, *, optional: bool = False) -> Callable[[str, Any], Any]:
    """A check: an int within [low, high], or None if optional."""

    def check(name: str, value: Any) -> Any:
        typed(int, optional=optional)(name, value)
        if value is not None and not low <= value <= high:
            raise ConfigError(name, f"must be between {low} and {high}, not {value}")
        return value

    return check


def tuple_of(kind: type) -> Callable[[str, Any], tuple[Any, ...]]:
    """A check: a sequence (not text) of `kind`, stored as a tuple."""

    def check(name: str, value: Any) -> tuple[Any, ...]:
        if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
            raise ConfigError(name, f"expected a sequence, got {value!r}")
        items = tuple(value)
        for item in items:
            if not isinstance(item, kind):
                raise ConfigError(name, f"expected {kind.__name__} items, got {item!r}")
        return items

    return check


def list_of(conv: Callable[[Any], Any]) -> Callable[[Any], tuple[Any, ...]]:
    """A JSON converter: a list, each item converted, as a tuple."""

    def parse(value: Any) -> tuple[Any, ...]:
        if not isinstance(value, list):
            raise TypeError(f"expected a list, got {value!r}")
        return tuple(conv(item) for item in value)

    return parse
