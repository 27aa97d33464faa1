"""DHCPv6 and RAs on the VM's tap: the bridge binding's IPv6 endpoint.

On the bridge binding the bridge `k6t-<nic>` also holds the pod NIC, so a
router advertisement sent on the bridge (to ff02::1) would leave the pod
onto the cluster network, and so would a reply to a MAC the bridge has not
learnt yet (it floods unknown unicast). This endpoint uses one AF_PACKET
socket bound to the tap instead: what it reads is what the VM sent; what it
writes goes to the VM and nowhere else (a frame sent on a tap is handed to
the tap's reader, qemu, and never enters the bridge).

Frames are whole (`vmnet.protocols.dhcp6.frames`): every one is addressed
to the VM's MAC. RAs come from the pod's router, its link-local address
and MAC (`Dhcp6Config.router`), so the VM's default route is the router
the pod used; DHCPv6 replies come from the link-local address derived from
the bridge's MAC, the address the bridge itself holds. A classic BPF
filter passes only what the VM sent: UDP to port 547 and router
solicitations.

Until the VM opens the tap it has no carrier and a frame would be dropped:
`send_ra` raises OSError(ENETDOWN) and the server retries; the VM's own
router solicitation brings an RA as soon as it is up.
"""

from __future__ import annotations

import errno
import socket
import struct
from dataclasses import dataclass
from ipaddress import IPv6Address

from vmnet.core.addr import MacAddress, eui64_link_local
from vmnet.core.errors import DriverError
from vmnet.core.netns import check_netns, run_in
from vmnet.protocols.dhcp6.config import Dhcp6Config
from vmnet.protocols.dhcp6.frames import ETH_P_IPV6, ICMPV6, UDP, frame, split, udp
from vmnet.protocols.dhcp6.ra import HOP_LIMIT
from vmnet.serve.endpoint6 import Received
from vmnet.serve.sockets import (
    IFF_RUNNING,
    attach_filter,
    check_ifname,
    link_flags,
    needs,
    require_up,
)

SERVER_PORT = 547
ALL_NODES = IPv6Address("ff02::1")
REPLY_HOP_LIMIT = 64
ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
# The tap is a bridge port: the bridge takes its frames before any handler
# bound to one protocol sees them, so the socket is bound to ETH_P_ALL and
# the filter does the rest: not outgoing (our own frames), IPv6, then UDP
# to port 547 or ICMPv6 type 133 (a router solicitation).
_BPF = (
    (0x20, 0, 0, 0xFFFFF004),  # ld pkttype (SKF_AD_OFF + SKF_AD_PKTTYPE)
    (0x15, 10, 0, PACKET_OUTGOING),
    (0x28, 0, 0, 12),  # ldh ethertype
    (0x15, 0, 8, ETH_P_IPV6),
    (0x30, 0, 0, 20),  # ldb next header
    (0x15, 0, 2, UDP),
    (0x28, 0, 0, 56),  # ldh UDP destination port
    (0x15, 3, 4, SERVER_PORT),
    (0x15, 0, 3, ICMPV6),
    (0x30, 0, 0, 54),  # ldb ICMPv6 type
    (0x15, 0, 1, 133),
    (0x06, 0, 0, 0xFFFF),
    (0x06, 0, 0, 0),
)


@dataclass(slots=True)
class TapEndpoint6:
    """The packet socket serving one VM on its tap."""

    ifname: str
    netns: str | None
    sock: socket.socket
    client_mac: MacAddress
    server_mac: MacAddress
    router: IPv6Address | None
    router_mac: MacAddress | None

    @property
    def readers(self) -> tuple[socket.socket, ...]:
        return (self.sock,)

    @property
    def server_address(self) -> IPv6Address:
        return eui64_link_local(self.server_mac)

    def receive(self, sock: socket.socket) -> Received | None:
        data, addr = sock.recvfrom(65535)
        if addr[2] == socket.PACKET_OUTGOING:  # the filter drops them; a frame queued before it
            return None
        got = split(data)
        if got.next_header == UDP:
            return Received("dhcp", got.packet, got.src_mac)
        return Received("rs", got.body, got.src_mac, got.hop_limit, got.src)

    def send_reply(
        self, payload: bytes, dest: IPv6Address, port: int, dest_mac: MacAddress | None = None
    ) -> None:
        body = udp(SERVER_PORT, port, payload)
        self.sock.send(
            frame(
                dst_mac=self.client_mac,
                src_mac=self.server_mac,
                src=self.server_address,
                dst=dest,
                next_header=UDP,
                body=body,
                hop_limit=REPLY_HOP_LIMIT,
            )
        )

    def send_ra(self, message: bytes) -> None:
        """Send `message` to ff02::1 in a frame to the VM's MAC (OSError until it has carrier)."""
        if not link_flags(self.sock, self.ifname) & IFF_RUNNING:
            raise OSError(errno.ENETDOWN, f"{self.ifname} has no carrier yet")
        router = self.router or self.server_address
        self.sock.send(
            frame(
                dst_mac=self.client_mac,
                src_mac=self.router_mac or self.server_mac,
                src=router,
                dst=ALL_NODES,
                next_header=ICMPV6,
                body=message,
                hop_limit=HOP_LIMIT,
            )
        )

    def close(self) -> None:
        self.sock.close()


def open_tap_endpoint6(netns: str | None, ifname: str, config: Dhcp6Config) -> TapEndpoint6:
    """Open the packet socket serving `config`'s VM on tap `ifname` in `netns`.

    Raises:
        ConfigError: bad namespace or interface name, or a config without client_mac.
        DriverError: ("dhcp6 bind", ifname, errno) for a missing or down tap or no
            permission (PrivilegeError for CAP_NET_RAW).
    """
    check_netns(netns)
    check_ifname(ifname)
    assert config.client_mac is not None  # Dhcp6Config checks it for tap_only
    try:
        sock = run_in(netns, lambda: _open(ifname))
    except OSError as err:
        raise DriverError("dhcp6 bind", ifname, err.errno or errno.EIO) from err
    return TapEndpoint6(
        ifname, netns, sock, config.client_mac, config.server_mac, config.router, config.router_mac
    )


def _open(ifname: str) -> socket.socket:
    with needs("CAP_NET_RAW", f"open a packet socket for DHCPv6 on {ifname}"):
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    try:
        require_up(sock, ifname)
        attach_filter(sock, b"".join(struct.pack("=HBBI", *insn) for insn in _BPF))
        sock.bind((ifname, ETH_P_ALL))
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock
