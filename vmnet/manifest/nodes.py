"""`Node`: one value of the untrusted input together with its path.

Every check on the input goes through a `Node`, so every failure is a
`ConfigError` naming the path of the offending value.

`None` reads as absent; a type mismatch names both the
expected and the actual JSON type.

Names are DNS-1123 labels or subdomains (RFC 1123, 2.1), checked with
`fullmatch`, so nothing that could traverse a path passes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import NoReturn

from vmnet.core.errors import ConfigError

_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


@dataclass(frozen=True, slots=True)
class Node:
    """A value of the input together with its path, for error messages."""

    value: object
    path: str

    def fail(self, cause: str) -> NoReturn:
        raise ConfigError(self.path or "<manifest>", cause)

    @property
    def absent(self) -> bool:
        return self.value is None

    def mapping(self, known: frozenset[str] | None = None) -> dict[str, object]:
        if self.value is None:
            return {}
        if not isinstance(self.value, dict):
            self.fail(f"must be a mapping, not {type_name(self.value)}")
        for key in self.value:
            if not isinstance(key, str):
                self.fail(f"key {key!r} must be a string")
            if known is not None and key not in known:
                hint = close_matches(key, sorted(known), n=1)
                self.child(key).fail(
                    "unknown field" + (f"; did you mean {hint[0]!r}?" if hint else "")
                )
        return self.value

    def child(self, key: str) -> Node:
        value = self.value.get(key) if isinstance(self.value, dict) else None
        shown = key if key.isprintable() and key.strip() == key and key else repr(key)
        return Node(value, f"{self.path}.{shown}" if self.path else shown)

    def require(self, key: str) -> Node:
        node = self.child(key)
        if node.absent:
            node.fail("missing")
        return node

    def elements(self) -> list[Node]:
        if self.value is None:
            return []
        if not isinstance(self.value, list):
            self.fail(f"must be a list, not {type_name(self.value)}")
        return [Node(v, f"{self.path}[{i}]") for i, v in enumerate(self.value)]

    def text(self) -> str | None:
        if self.value is None or isinstance(self.value, str):
            return self.value
        self.fail(f"must be a string, not {type_name(self.value)}")

    def integer(self, low: int, high: int | None = None) -> int | None:
        v = self.value
        if v is None:
            return None
        if not isinstance(v, int) or isinstance(v, bool):
            self.fail(f"must be an integer, not {type_name(v)}")
        if v < low or (high is not None and v > high):
            self.fail(f"{v} is out of range {low}-{high}" if high else f"{v} must be >= {low}")
        return v

    def flag(self) -> bool:
        if self.value is None or isinstance(self.value, bool):
            return bool(self.value)
        self.fail(f"must be true or false, not {type_name(self.value)}")

    def name(self, rule: re.Pattern[str], max_len: int, what: str) -> str:
        text = self.text()
        if text is None or text == "":
            self.fail("missing")
        if len(text) > max_len:
            self.fail(f"{text[:16]!r}... is longer than {max_len} characters")
        if not rule.fullmatch(text):
            self.fail(f"invalid {what} {text!r}: use lower-case letters, digits and '-'")
        return text


def type_name(value: object) -> str:
    names = {
        dict: "a mapping",
        list: "a list",
        str: "a string",
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        type(None): "null",
    }
    return names.get(type(value), type(value).__name__)


def dns_label(node: Node, what: str) -> str:
    return node.name(_LABEL, 63, what)


def close_matches(
    word: str, possibilities: Iterable[str], n: int = 3, cutoff: float = 0.6
) -> list[str]:
    """difflib's close matches, for an error's hint."""
    import difflib  # only on an error: a valid manifest never pays for it

    return difflib.get_close_matches(word, possibilities, n=n, cutoff=cutoff)
