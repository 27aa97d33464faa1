"""Socket helpers every serving module needs, written once.

- `check_ifname`: an interface name the kernel could have (1-15 bytes, no
  slash, no white space), else ConfigError("ifname", ...), before anything
  is opened;
- `link_flags`: a link's IFF_* flags (SIOCGIFFLAGS); `require_up`:
  OSError(ENETDOWN) unless the link is up, OSError(ENODEV) if it does not
  exist;
- `needs`: a step that fails for lack of a capability (EPERM, EACCES)
  becomes one `PrivilegeError` naming the capability;
- `attach_filter`: a classic BPF program (`struct sock_filter[]` bytes) as
  the socket's filter (SO_ATTACH_FILTER, Documentation/networking/filter.rst).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import socket
import struct
from collections.abc import Iterator

from vmnet.core.errors import ConfigError, PrivilegeError

SIOCGIFFLAGS = 0x8913  # linux/sockios.h
IFF_UP, IFF_RUNNING = 0x1, 0x40
SO_ATTACH_FILTER = 26  # asm-generic/socket.h
_IFREQ = struct.Struct("16sH14x")
_INSN = 8  # sizeof(struct sock_filter)


def low_port(port: int) -> str:
    """The unprivileged way to bind `port`, for an error message."""
    return f"net.ipv4.ip_unprivileged_port_start <= {port} in the pod"


def check_ifname(ifname: str) -> str:
    if not 0 < len(ifname) < 16 or "/" in ifname or any(c.isspace() for c in ifname):
        raise ConfigError("ifname", f"invalid interface name {ifname!r}")
    return ifname


def link_flags(sock: socket.socket, ifname: str) -> int:
    """The link's IFF_* flags (SIOCGIFFLAGS) in the namespace of `sock`."""
    ifreq = fcntl.ioctl(sock, SIOCGIFFLAGS, _IFREQ.pack(ifname.encode(), 0))
    flags: int = _IFREQ.unpack(ifreq)[1]
    return flags


def require_up(sock: socket.socket, ifname: str) -> None:
    if not link_flags(sock, ifname) & IFF_UP:
        raise OSError(errno.ENETDOWN, "link is down")


def attach_filter(sock: socket.socket, program: bytes) -> None:
    buf = ctypes.create_string_buffer(program, len(program))
    fprog = struct.pack("@HP", len(program) // _INSN, ctypes.addressof(buf))  # struct sock_fprog
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


@contextlib.contextmanager
def needs(capability: str, what: str, alternative: str | None = None) -> Iterator[None]:
    try:
        yield
    except PermissionError as err:
        raise PrivilegeError(capability, what, alternative) from err
