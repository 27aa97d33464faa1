"""Package exports imported on first use (PEP 562).

A package's `__init__` names what it offers; the module that defines a name
is imported only when the name is first read. A process then loads only
what it uses: `vmnet --version` loads no manifest parser, `vmnet-cni` no
XML library, `vmnet dhcp` no netlink driver. Each command is a process per
pod, so import time is time a user waits (docs/performance.md).

Type checkers see the real names through the package's `TYPE_CHECKING`
imports; `dir()` and `from package import *` see `__all__`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping

TYPE_CHECKING = False  # not typing's: importing typing is a cost every command would pay
if TYPE_CHECKING:
    from typing import Any


def exports(
    package: str, names: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """`__getattr__` and `__dir__` for `package`, whose names map to the
    module (relative to the package, e.g. ".codec") that defines each."""
    namespace = importlib.import_module(package).__dict__

    def getattr_(name: str) -> Any:
        try:
            module = names[name]
        except KeyError:
            raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        value = getattr(importlib.import_module(module, package), name)
        namespace[name] = value
        return value

    def dir_() -> list[str]:
        return sorted(set(namespace) | set(names))

    return getattr_, dir_
