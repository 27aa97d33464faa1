"""The sockets that serve DHCPv6 and RAs on one interface, opened inside a netns.

Sockets are opened inside the pod netns on a dedicated thread
(`vmnet.core.netns.run_in`); the caller never moves.

DHCPv6 in: an AF_PACKET socket on the bridge with a classic BPF filter
(IPv6, next header UDP, destination port 547), because the responder's
MAC filter needs each request's source MAC, which a UDP socket does not
tell. The filter is attached before the socket is bound, so no other
frame is ever queued.

A UDP socket on [::]:547 (IPV6_V6ONLY, SO_REUSEADDR, SO_BINDTODEVICE, as
KubeVirt) owns the port, joins ff02::1:2 on the bridge (so the bridge
delivers the clients' multicast to the host, RFC 8415 §7.1) and sends the
replies to the client's address and port with the bridge's scope id. What
it receives is a copy of the frames the packet socket gets, and the server
discards it.

RAs: a raw ICMPv6 socket bound to the bridge, hop limits 255, filtered to
router solicitations (ICMP6_FILTER) and joined to ff02::2. RAs go to
ff02::1 from the bridge's link-local address, given explicitly with
IPV6_PKTINFO (RFC 4861 §6.1.2 has clients drop RAs from other sources).
The kernel computes the checksum (RFC 3542 §3.1).

The link-local address appears only once the bridge has a carrier (a tap
whose VM has not started has none) and is tentative during DAD; until
then `send_ra` raises OSError(EADDRNOTAVAIL) and the server retries.
`open_endpoint6(wait_link_local=...)` waits for it up front instead.
"""

from __future__ import annotations

import errno
import socket
import struct
import time
from dataclasses import dataclass
from ipaddress import IPv6Address

from vmnet.core.addr import MacAddress
from vmnet.core.errors import DriverError
from vmnet.core.netns import check_netns, run_in
from vmnet.protocols.dhcp6.ra import HOP_LIMIT
from vmnet.serve.sockets import attach_filter, check_ifname, low_port, needs, require_up

SERVER_PORT = 547
ALL_DHCP = "ff02::1:2"
ALL_NODES = "ff02::1"
ALL_ROUTERS = "ff02::2"
ETH_P_IPV6 = 0x86DD
ICMP6_FILTER = 1  # linux/icmpv6.h; a set bit blocks that type
IFA_F_DADFAILED, IFA_F_TENTATIVE = 0x08, 0x40
# ldb [6]; jeq #17 else drop; ldh [42]; jeq #547 else drop; ret all; ret 0
_BPF = (
    (0x30, 0, 0, 6),
    (0x15, 0, 3, 17),
    (0x28, 0, 0, 42),
    (0x15, 0, 1, SERVER_PORT),
    (0x06, 0, 0, 0xFFFF),
    (0x06, 0, 0, 0),
)


@dataclass(frozen=True, slots=True)
class Received:
    """One request an endpoint read: a DHCPv6 packet or a router solicitation."""

    kind: str  # "dhcp": `data` is the IPv6 packet; "rs": the ICMPv6 message
    data: bytes
    mac: MacAddress | None  # the frame's source MAC, where the socket tells it
    hops: int | None = None
    source: IPv6Address | None = None


@dataclass(slots=True)
class Endpoint6:
    """The sockets serving one interface."""

    ifname: str
    netns: str | None
    ifindex: int
    rx: socket.socket
    udp: socket.socket
    icmp: socket.socket
    link_local: IPv6Address | None = None

    @property
    def readers(self) -> tuple[socket.socket, ...]:
        return (self.rx, self.udp, self.icmp)

    def receive(self, sock: socket.socket) -> Received | None:
        """What `sock` (one of `readers`, readable) holds; None for nothing to serve."""
        if sock is self.udp:  # a copy of what rx gets: the port is only held
            sock.recv(65535)
            return None
        if sock is self.rx:
            data, addr = sock.recvfrom(65535)
            if addr[2] == socket.PACKET_OUTGOING:
                return None
            return Received("dhcp", data, MacAddress(addr[4][:6]) if len(addr[4]) >= 6 else None)
        data, ancillary, _, addr = sock.recvmsg(1500, socket.CMSG_SPACE(4))
        hops = None
        for level, kind, value in ancillary:
            if level == socket.IPPROTO_IPV6 and kind == socket.IPV6_HOPLIMIT and len(value) >= 4:
                hops = struct.unpack("=i", value[:4])[0]
        return Received("rs", data, None, hops, IPv6Address(addr[0].split("%")[0]))

    def send_reply(
        self, payload: bytes, dest: IPv6Address, port: int, dest_mac: MacAddress | None = None
    ) -> None:
        self.udp.sendto(payload, (str(dest), port, 0, self.ifindex))

    def send_ra(self, message: bytes) -> None:
        """Send `message` to ff02::1 from the link-local (OSError until it is usable)."""
        if self.link_local is None:
            self.link_local = self.find_link_local()
            if self.link_local is None:
                raise OSError(errno.EADDRNOTAVAIL, "no usable link-local address yet")
        info = self.link_local.packed + struct.pack("=I", self.ifindex)
        try:
            self.icmp.sendmsg(
                [message],
                [(socket.IPPROTO_IPV6, socket.IPV6_PKTINFO, info)],
                0,
                (ALL_NODES, 0, 0, self.ifindex),
            )
        except OSError:
            self.link_local = None
            raise

    def find_link_local(self) -> IPv6Address | None:
        """The interface's link-local address once DAD has passed, else None."""
        return run_in(self.netns, lambda: _usable_link_local(self.ifname))

    def close(self) -> None:
        for sock in (self.rx, self.udp, self.icmp):
            sock.close()


def open_endpoint6(netns: str | None, ifname: str, *, wait_link_local: float = 0.0) -> Endpoint6:
    """Open the sockets serving `ifname` in `netns` (None: this namespace).

    Args:
        wait_link_local: if > 0, also wait up to this many seconds for the
            interface's link-local address to leave DAD.

    Raises:
        ConfigError: bad namespace or interface name.
        DriverError: ("dhcp6 bind", ifname, errno) for a missing or down link,
            a busy port or no permission; ("dhcp6 link-local", ifname,
            EADDRNOTAVAIL) when the wait runs out.
    """
    check_netns(netns)
    check_ifname(ifname)
    try:
        endpoint = Endpoint6(ifname, netns, *run_in(netns, lambda: _open(ifname)))
    except OSError as err:
        raise DriverError("dhcp6 bind", ifname, err.errno or errno.EIO) from err
    deadline = time.monotonic() + wait_link_local
    while wait_link_local > 0 and endpoint.link_local is None:
        endpoint.link_local = endpoint.find_link_local()
        if endpoint.link_local is None:
            if time.monotonic() >= deadline:
                endpoint.close()
                raise DriverError("dhcp6 link-local", ifname, errno.EADDRNOTAVAIL)
            time.sleep(0.05)
    return endpoint


def _open(ifname: str) -> tuple[int, socket.socket, socket.socket, socket.socket]:
    try:
        ifindex = socket.if_nametoindex(ifname)
    except OSError as err:  # Python raises it without an errno
        raise OSError(errno.ENODEV, f"no interface {ifname}") from err
    opened: list[socket.socket] = []
    try:
        opened.append(udp := socket.socket(socket.AF_INET6, socket.SOCK_DGRAM))
        require_up(udp, ifname)
        udp.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        udp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        udp.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, ifname.encode())
        udp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        with needs(
            "CAP_NET_BIND_SERVICE",
            f"bind UDP port {SERVER_PORT} on {ifname}",
            low_port(SERVER_PORT),
        ):
            udp.bind(("::", SERVER_PORT))
        _join(udp, ALL_DHCP, ifindex)
        with needs("CAP_NET_RAW", f"open a packet socket for DHCPv6 on {ifname}"):
            opened.append(rx := socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, 0))
        _attach_bpf(rx)
        rx.bind((ifname, ETH_P_IPV6))
        with needs(
            "CAP_NET_RAW", f"open a raw ICMPv6 socket for router advertisements on {ifname}"
        ):
            opened.append(
                icmp := socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
            )
        _setup_icmp(icmp, ifname, ifindex)
    except BaseException:
        for sock in opened:
            sock.close()
        raise
    for sock in opened:
        sock.setblocking(False)
    return ifindex, rx, udp, icmp


def _join(sock: socket.socket, group: str, ifindex: int) -> None:
    mreq = socket.inet_pton(socket.AF_INET6, group) + struct.pack("@I", ifindex)
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, mreq)


def _attach_bpf(sock: socket.socket) -> None:
    attach_filter(sock, b"".join(struct.pack("=HBBI", *insn) for insn in _BPF))


def _setup_icmp(icmp: socket.socket, ifname: str, ifindex: int) -> None:
    icmp.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, ifname.encode())
    blocked = [0xFFFFFFFF] * 8
    blocked[133 >> 5] &= ~(1 << (133 & 31))  # pass router solicitations only
    icmp.setsockopt(socket.IPPROTO_ICMPV6, ICMP6_FILTER, struct.pack("=8I", *blocked))
    icmp.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, HOP_LIMIT)
    icmp.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, HOP_LIMIT)
    icmp.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, 0)
    icmp.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVHOPLIMIT, 1)
    _join(icmp, ALL_ROUTERS, ifindex)


def _usable_link_local(ifname: str) -> IPv6Address | None:
    # /proc/thread-self, not /proc/self: only this thread is in the netns.
    with open("/proc/thread-self/net/if_inet6") as table:
        for line in table:
            hexaddr, _, _, scope, flags, name = line.split()
            bad = int(flags, 16) & (IFA_F_TENTATIVE | IFA_F_DADFAILED)
            if name == ifname and int(scope, 16) == 0x20 and not bad:
                return IPv6Address(bytes.fromhex(hexaddr))
    return None
