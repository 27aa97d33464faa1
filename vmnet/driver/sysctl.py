"""The sysctl driver: /proc/sys read and written from inside a namespace.

Rule: /proc/sys/net shows the namespace of the thread that opens the file, so
every access runs on a thread that entered the namespace (`netns.run_in`).
Writes of a value already set are skipped by the caller (`apply`), not here.
"""

from __future__ import annotations

import errno
import os

from vmnet.driver.netns import run_in
from vmnet.errors import DriverError


class ProcSys:
    """`vmnet.driver.Sysctl` over /proc/sys."""

    def __init__(self, netns: str | None = None, root: str = "/proc/sys") -> None:
        self.netns = netns
        self.root = root

    def _path(self, key: str) -> str:
        if ".." in key.split("/") or key.startswith("/"):
            raise DriverError("sysctl", key, errno.EINVAL)
        return os.path.join(self.root, key)

    def get(self, key: str) -> str | None:
        path = self._path(key)

        def read() -> str | None:
            try:
                with open(path) as f:
                    return " ".join(f.read().split())
            except FileNotFoundError:
                return None

        try:
            return run_in(self.netns, read)
        except OSError as err:
            raise DriverError("sysctl read", key, err.errno or errno.EIO) from err

    def set(self, key: str, value: str) -> None:
        path = self._path(key)

        def write() -> None:
            with open(path, "w") as f:
                f.write(value)

        try:
            run_in(self.netns, write)
        except OSError as err:
            raise DriverError(f"sysctl write {value!r}", key, err.errno or errno.EIO) from err
