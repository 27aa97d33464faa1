"""The vmnet error tree.

Every error vmnet raises on purpose derives from `VmnetError`.

Messages read "<op> <target>: <cause>" so a user sees, on one line, what
was attempted, on what, and why it failed.

Each class carries the process exit code the CLI maps it to:
2 bad input (nothing changed), 3 critical network error, 1 anything else.
"""

from __future__ import annotations

import errno as _errno
import os


class VmnetError(Exception):
    """Root of every error vmnet raises on purpose."""

    exit_code = 1


class ConfigError(VmnetError):
    """Bad input: a manifest, an argument or a cache that cannot be used.

    Raised before any mutation, so nothing in the pod netns has changed.
    """

    exit_code = 2

    def __init__(self, field: str, cause: str) -> None:
        self.field = field
        self.cause = cause
        super().__init__(f"{field}: {cause}")


class DiscoveryError(VmnetError):
    """The pod network is not what a binding needs (missing NIC, no address).

    Raised before any mutation, so it maps to the bad-input exit code.
    """

    exit_code = 2


class CacheError(VmnetError):
    """A cache file cannot be used: truncated, corrupted, foreign, of another
    schema, or unreadable (its directory is a file, no permission).

    Raised when reading, which vmnet does before any mutation, so it maps to
    the bad-input exit code. A cache that cannot be *written* is a failed
    side effect (`DriverError("write cache", ...)`).
    """

    exit_code = 2


class PrivilegeError(VmnetError):
    """The process lacks a capability a step needs; raised before that step
    changes anything, so it maps to the bad-input exit code."""

    exit_code = 2

    def __init__(self, capability: str, what: str, alternative: str | None = None) -> None:
        self.capability = capability
        extra = f" (or {alternative})" if alternative else ""
        super().__init__(f"{what}: needs {capability}{extra}, which this process does not have")


class DriverError(VmnetError):
    """A side effect (netlink, sysctl, nft, tap) failed."""

    exit_code = 3

    def __init__(self, op: str, target: str, err: int | str) -> None:
        self.op = op
        self.target = target
        self.errno = err if isinstance(err, int) else 0
        cause = err if isinstance(err, str) else _errno_name(err)
        super().__init__(f"{op} {target}: {cause}")


class CriticalNetworkError(VmnetError):
    """The pod network is in a state vmnet cannot finish or undo by itself."""

    exit_code = 3


class DhcpDecodeError(VmnetError):
    """Bytes received from the network are not a DHCP message vmnet can use."""

    exit_code = 1


def _errno_name(err: int) -> str:
    name = _errno.errorcode.get(err, str(err))
    return f"{name} ({os.strerror(err)})"
