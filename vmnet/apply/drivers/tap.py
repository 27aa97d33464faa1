"""The tap driver: persistent taps made with the TUN/TAP ioctls.

Rules (docs/kubevirt.md, Taps, libvirt's own flags):
1. The tap is created inside the pod namespace, on a thread that entered it.
2. One queue: IFF_TAP|IFF_NO_PI|IFF_TUN_EXCL|IFF_ONE_QUEUE. Several queues:
   IFF_TAP|IFF_NO_PI|IFF_MULTI_QUEUE. qemu re-attaches with its own flags;
   only IFF_MULTI_QUEUE has to match.
3. Owner and group are set before TUNSETPERSIST; the fd is closed at the end
   and the device stays (persistent).
4. Creation is retried on EBUSY a few times (RHBZ 1933627, KubeVirt retries).
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct
import time
from collections.abc import Callable
from typing import Any

from vmnet.core.errors import DriverError
from vmnet.core.netns import Worker, run_in
from vmnet.plan.state import TapSpec

TUNSETIFF = 0x400454CA
TUNSETPERSIST = 0x400454CB
TUNSETOWNER = 0x400454CC
TUNSETGROUP = 0x400454CE
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
IFF_ONE_QUEUE = 0x2000
IFF_MULTI_QUEUE = 0x0100
IFF_TUN_EXCL = 0x8000


def tap_flags(queues: int) -> int:
    if queues > 1:
        return IFF_TAP | IFF_NO_PI | IFF_MULTI_QUEUE
    return IFF_TAP | IFF_NO_PI | IFF_TUN_EXCL | IFF_ONE_QUEUE


class TunTap:
    """`vmnet.apply.drivers.Tap` over /dev/net/tun."""

    def __init__(
        self,
        netns: str | None = None,
        retries: int = 5,
        pause: float = 0.2,
        worker: Worker | None = None,
    ) -> None:
        self.netns = netns
        self.retries = retries
        self.pause = pause
        self._run: Callable[[Callable[[], Any]], Any] = (
            worker.run if worker is not None else lambda fn: run_in(netns, fn)
        )

    def create(self, name: str, spec: TapSpec) -> None:
        for attempt in range(self.retries):
            try:
                self._run(lambda: _create(name, spec))
                return
            except OSError as err:
                if err.errno != errno.EBUSY or attempt == self.retries - 1:
                    raise DriverError("tap create", name, err.errno or errno.EIO) from err
                time.sleep(self.pause)


def _create(name: str, spec: TapSpec) -> None:
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC)
    try:
        ifr = struct.pack("16sH22x", name.encode(), tap_flags(spec.queues))
        fcntl.ioctl(fd, TUNSETIFF, ifr)
        fcntl.ioctl(fd, TUNSETOWNER, spec.uid)
        fcntl.ioctl(fd, TUNSETGROUP, spec.gid)
        fcntl.ioctl(fd, TUNSETPERSIST, 1)
    finally:
        os.close(fd)
