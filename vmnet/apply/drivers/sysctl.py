"""The sysctl driver: /proc/sys read and written from inside a namespace.

Rule: /proc/sys/net shows the namespace of the thread that opens the file, so
every access runs on a thread that entered the namespace (`netns.run_in`).
Writes of a value already set are skipped by the caller (`apply`), not here.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from typing import Any

from vmnet.core.errors import DriverError
from vmnet.core.netns import Worker, run_in


class ProcSys:
    """`vmnet.apply.drivers.Sysctl` over /proc/sys."""

    def __init__(
        self, netns: str | None = None, root: str = "/proc/sys", worker: Worker | None = None
    ) -> None:
        self.netns = netns
        self.root = root
        self._run: Callable[[Callable[[], Any]], Any] = (
            worker.run if worker is not None else lambda fn: run_in(netns, fn)
        )

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
            return self._run(read)  # type: ignore[no-any-return]
        except OSError as err:
            raise DriverError("sysctl read", key, err.errno or errno.EIO) from err

    def set(self, key: str, value: str) -> None:
        path = self._path(key)

        def write() -> None:
            with open(path, "w") as f:
                f.write(value)

        try:
            self._run(write)
        except OSError as err:
            raise DriverError(f"sysctl write {value!r}", key, err.errno or errno.EIO) from err
