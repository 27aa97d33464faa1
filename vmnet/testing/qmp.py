"""A minimal QMP client (qemu's JSON machine protocol) for tests that drive qemu.

One command at a time over a unix socket: the greeting is read and
capabilities negotiated on connect; `execute` returns the command's
`return` value, raises `DriverError` on an `error` answer, and keeps the
asynchronous events it reads on the way in `events`. Every read has a
deadline. Used for live migration (`vmnet.testing.qemu.QemuGuest.migrate_to`).
"""

from __future__ import annotations

import json
import socket
import time
from typing import Any, Self

from vmnet.core.errors import DriverError


class Qmp:
    def __init__(self, path: str, *, timeout: float = 10.0) -> None:
        self.path, self.timeout = path, timeout
        self.events: list[dict[str, Any]] = []
        self._sock = self._connect()
        self._buf = b""
        greeting = self._read()
        if "QMP" not in greeting:
            raise DriverError("qmp greeting", path, f"unexpected {greeting!r}")
        self.execute("qmp_capabilities")

    def _connect(self) -> socket.socket:
        deadline = time.monotonic() + self.timeout
        while True:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect(self.path)
                sock.settimeout(self.timeout)
                return sock
            except OSError as err:
                sock.close()
                if time.monotonic() > deadline:
                    raise DriverError("qmp connect", self.path, err.errno or 0) from err
                time.sleep(0.02)  # qemu creates the socket as it starts

    def _read(self) -> dict[str, Any]:
        while b"\n" not in self._buf:
            try:
                data = self._sock.recv(65536)
            except OSError as err:
                raise DriverError("qmp read", self.path, err.errno or 0) from err
            if not data:
                raise DriverError("qmp read", self.path, "qemu closed the socket")
            self._buf += data
        line, self._buf = self._buf.split(b"\n", 1)
        message: dict[str, Any] = json.loads(line)
        return message

    def execute(self, command: str, **arguments: Any) -> Any:
        request: dict[str, Any] = {"execute": command}
        if arguments:
            request["arguments"] = arguments
        self._sock.sendall(json.dumps(request).encode() + b"\n")
        while True:
            message = self._read()
            if "event" in message:
                self.events.append(message)
            elif "error" in message:
                error = message["error"]
                raise DriverError(f"qmp {command}", self.path, error.get("desc", str(error)))
            elif "return" in message:
                return message["return"]

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
