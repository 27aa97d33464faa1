"""The guest's wire without qemu: frames relayed between a tap and a veth.

The relay attaches to a tap that already exists (vmnet phase 1 made it):
/dev/net/tun is opened and TUNSETIFF issued on a thread inside the pod
namespace (`run_in`), because the kernel looks the name up in the
namespace of the task that opened /dev/net/tun. TUNSETIFF on a missing
name would create a new tap, so the link is looked up first.

Flags: IFF_TAP|IFF_NO_PI. Only IFF_MULTI_QUEUE has to match the flags the
tap was created with (drivers/net/tun.c `tun_set_iff`); on EINVAL the
relay retries with IFF_MULTI_QUEUE. IFF_VNET_HDR is never set, so the
kernel hands the tap whole, checksummed frames. A single-queue tap
another process holds (qemu) gives EBUSY.

The other side is an AF_PACKET socket bound to a veth. Frames the socket
sees with pkttype PACKET_OUTGOING are the relay's own writes and are
dropped (PACKET_IGNORE_OUTGOING, and checked again per frame), else
every frame would loop back.

One thread per relay, named `vmt-relay:<tap>`, polls both fds and a wake
pipe. `stop()` wakes it, joins it and closes every fd; a relay whose tap
or veth disappears ends by itself and records why in `.error`.
"""

from __future__ import annotations

import errno
import fcntl
import os
import select
import socket
import struct
import threading
import weakref
from typing import Self

from vmnet.core.errors import DriverError
from vmnet.core.netns import run_in
from vmnet.testing.namespaces import link_index, open_ipr

TUNSETIFF = 0x400454CA
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
IFF_MULTI_QUEUE = 0x0100
ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_IGNORE_OUTGOING = 23
PACKET_OUTGOING = 4
_FRAME_MAX = 65536
_SOCK_BUF = 4 << 20
_TRANSIENT = (errno.EAGAIN, errno.ENETDOWN, errno.ENXIO, errno.ENOBUFS, errno.EIO)

_live: weakref.WeakSet[TapRelay] = weakref.WeakSet()


def attach_tap(netns: str, tap: str) -> int:
    """Open an fd on the existing tap `tap` in `netns`.

    Raises:
        DriverError: the tap is missing (ENODEV), held by another process
            (EBUSY), or refuses both flag sets (EINVAL, message names them).
    """
    with open_ipr(netns) as ipr:
        link_index(ipr, tap)

    def attach() -> int:
        fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC | os.O_NONBLOCK)
        try:
            for flags in (IFF_TAP | IFF_NO_PI, IFF_TAP | IFF_NO_PI | IFF_MULTI_QUEUE):
                try:
                    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH22x", tap.encode(), flags))
                    return fd
                except OSError as err:
                    if err.errno != errno.EINVAL:
                        raise
            raise OSError(errno.EINVAL, "IFF_TAP|IFF_NO_PI[|IFF_MULTI_QUEUE] rejected")
        except BaseException:
            os.close(fd)
            raise

    try:
        return run_in(netns, attach)
    except OSError as err:
        cause: int | str = err.errno or errno.EIO
        if err.errno == errno.EINVAL:
            cause = f"EINVAL: tap accepts neither {err.strerror}"
        raise DriverError("tap_attach", f"{tap} in {netns}", cause) from err


def open_packet_socket(netns: str, ifname: str) -> socket.socket:
    """An AF_PACKET socket bound to `ifname` in `netns`, own frames ignored."""

    def make() -> socket.socket:
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        try:
            sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _SOCK_BUF)
            sock.bind((ifname, ETH_P_ALL))
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        return sock

    try:
        return run_in(netns, make)
    except OSError as err:
        raise DriverError("packet_bind", f"{ifname} in {netns}", err.errno or errno.EIO) from err


class TapRelay:
    """Relay frames between tap `tap` (pod namespace) and veth `veth`."""

    def __init__(self, pod_netns: str, tap: str, wire_netns: str, veth: str) -> None:
        self.tap = tap
        self.error: BaseException | None = None
        self.to_guest = 0
        self.to_tap = 0
        self._tap_fd = attach_tap(pod_netns, tap)
        try:
            self._sock = open_packet_socket(wire_netns, veth)
        except BaseException:
            os.close(self._tap_fd)
            raise
        self._wake_r, self._wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self._thread = threading.Thread(target=self._run, name=f"vmt-relay:{tap}", daemon=True)
        self._closed = False
        _live.add(self)
        self._thread.start()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        poller = select.poll()
        for fd in (self._tap_fd, self._sock.fileno(), self._wake_r):
            poller.register(fd, select.POLLIN)
        try:
            while True:
                for fd, _events in poller.poll():
                    if fd == self._wake_r:
                        return
                    if fd == self._tap_fd:
                        self._tap_to_guest()
                    else:
                        self._guest_to_tap()
        except OSError as err:
            self.error = err

    def _tap_to_guest(self) -> None:
        try:
            frame = os.read(self._tap_fd, _FRAME_MAX)
        except BlockingIOError:
            return
        try:
            self._sock.send(frame)
            self.to_guest += 1
        except OSError as err:
            if err.errno not in _TRANSIENT:
                raise

    def _guest_to_tap(self) -> None:
        try:
            frame, addr = self._sock.recvfrom(_FRAME_MAX)
        except OSError as err:
            if err.errno in _TRANSIENT:
                return
            raise
        if addr[2] == PACKET_OUTGOING:
            return
        try:
            os.write(self._tap_fd, frame)
            self.to_tap += 1
        except OSError as err:
            if err.errno not in _TRANSIENT:
                raise

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread and close every fd; calling it again is a no-op."""
        if self._closed:
            return
        self._closed = True
        try:
            os.write(self._wake_w, b"x")
            self._thread.join(timeout)
            if self._thread.is_alive():
                raise DriverError(
                    "relay_stop", self.tap, f"thread still running after {timeout:g}s"
                )
        finally:
            if not self._thread.is_alive():
                for fd in (self._tap_fd, self._wake_r, self._wake_w):
                    os.close(fd)
                self._sock.close()
                _live.discard(self)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else f"stopped ({self.error!r})"
        return f"TapRelay({self.tap}, {state}, to_guest={self.to_guest}, to_tap={self.to_tap})"


def live_relays() -> list[str]:
    """Relays not stopped yet, and relay threads still alive (for leak checks)."""
    found = [repr(r) for r in list(_live)]
    found += [
        t.name
        for t in threading.enumerate()
        if t.name.startswith("vmt-relay:") and not any(t is r._thread for r in list(_live))
    ]
    return found
