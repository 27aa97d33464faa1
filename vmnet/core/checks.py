"""Field checks for frozen config dataclasses.

`typed`, `ranged` and `tuple_of` each raise `ConfigError` naming the field;
`check_fields` runs them from a dataclass's `__post_init__`, so a config that
exists has passed them, whether it was built by code or decoded from the
cache (the decoder turns the error into a `CacheError` naming the key).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from vmnet.core.errors import ConfigError


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


def boolean(name: str, value: Any) -> bool:
    """A check: True or False, nothing else."""
    if not isinstance(value, bool):
        raise ConfigError(name, f"expected bool, got {value!r}")
    return value


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
