"""Rebuilding frozen config dataclasses from their cached JSON.

Rule: a cached record is untrusted input. Every problem (not an object, an
unknown or missing key, a value its converter or the dataclass refuses) is
one `CacheError` naming the record and the key; nothing else escapes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import fields
from typing import Any, TypeVar

from vmnet.errors import CacheError, ConfigError, VmnetError

T = TypeVar("T")


def from_json(cls: type[T], obj: object, what: str, required: Iterable[str],
              converters: Mapping[str, Callable[[Any], Any]]) -> T:
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
