"""Sending whole Ethernet frames out of one link (`vmnet.apply.drivers.FrameSender`).

An AF_PACKET socket opened in the pod netns, bound to the link, used for
phase 1's address announcements (`vmnet.protocols.announce`). Frames sent
on a bridge port leave through that port only: they do not enter the bridge.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Sequence

from vmnet.core.errors import DriverError
from vmnet.core.netns import Worker, run_in


class PacketFrames:
    def __init__(self, netns: str | None, worker: Worker | None = None) -> None:
        self._netns, self._worker = netns, worker

    def send(self, ifname: str, frames: Sequence[bytes]) -> None:
        def open_socket() -> socket.socket:
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
            try:
                sock.bind((ifname, 0))
            except BaseException:
                sock.close()
                raise
            return sock

        try:
            opened = (
                self._worker.run(open_socket) if self._worker else run_in(self._netns, open_socket)
            )
            with opened as sock:
                for data in frames:
                    sock.send(data)
        except OSError as err:
            raise DriverError("send frames", ifname, err.errno or errno.EIO) from err
