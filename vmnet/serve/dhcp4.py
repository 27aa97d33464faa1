"""The thin I/O shell around `SingleLeaseResponder`: recv, decode, respond, send.

One `Endpoint` per serving interface (a bridge `k6t-*`), opened inside
the pod netns on a dedicated thread (`vmnet.core.netns.run_in`); the
caller never moves.

Receive: a UDP socket on 0.0.0.0:67 with SO_REUSEADDR and
SO_BINDTODEVICE(bridge). Several bridges in one netns each get their own
socket and the kernel gives each the packets of its own device, unicast
renewals to the bridge's server id included.

Send: an AF_PACKET socket (SOCK_DGRAM, so the kernel writes the Ethernet
header with the bridge's current MAC) carrying IPv4 + UDP built by
`codec.frame_ipv4_udp`, addressed to chaddr or ff:ff:ff:ff:ff:ff. This
needs neither ARP nor a route to the client: the bridge's only IPv4 is a
link-local /32 and the client's address is not local to the pod.

What happens to each datagram is `vmnet.protocols.dhcp4.exchange.Exchange`
(decode, respond, encode, frame, the OFFER memo, the counters); this
module only reads IP_PKTINFO (to tell unicast requests) and sends.

`serve` never dies on input and returns within about 0.1 s after `stop`
is set; send errors are logged. Each wake-up serves up to `BURST` queued
packets per endpoint before polling again: one select per burst.
"""

from __future__ import annotations

import errno
import logging
import selectors
import socket
import struct
import threading
from collections.abc import Sequence
from dataclasses import dataclass

from vmnet.core.errors import DriverError
from vmnet.core.netns import check_netns, run_in
from vmnet.protocols.dhcp4.codec import IP_UDP_HEADERS
from vmnet.protocols.dhcp4.exchange import Exchange, Outgoing
from vmnet.protocols.dhcp4.responder import SERVER_PORT, SingleLeaseResponder
from vmnet.serve.sockets import check_ifname, low_port, needs, require_up

ETH_P_IP = 0x0800
IP_PKTINFO = 8  # linux/in.h; struct in_pktinfo {int ifindex; in_addr spec_dst, addr}
_PKTINFO = struct.Struct("=i4s4s")
POLL_SECONDS = 0.1
BURST = 64  # packets served per endpoint per wake-up: drains a queue, stays fair
_CMSG_SPACE = socket.CMSG_SPACE(_PKTINFO.size)

log = logging.getLogger("vmnet.protocols.dhcp4")


@dataclass(slots=True)
class Endpoint:
    """The sockets serving one interface."""

    ifname: str
    netns: str | None
    rx: socket.socket
    tx: socket.socket | None  # None: unprivileged, replies go out through rx

    def send(self, out: Outgoing) -> None:
        """Send one framed reply as an Ethernet frame to its MAC, or, without
        a packet socket, as UDP: unicast to a client that already has its
        address (a renewal), else broadcast, since the kernel could not
        resolve the MAC of an address the client does not hold yet."""
        if self.tx is not None:
            self.tx.sendto(out.packet, (self.ifname, ETH_P_IP, 0, 0, out.dest_mac.packed))
            return
        reply = out.reply
        holds = reply.dest_ip == reply.message.ciaddr and not reply.broadcast
        dest = str(reply.dest_ip) if holds else "255.255.255.255"
        self.rx.sendto(out.packet[IP_UDP_HEADERS:], (dest, reply.dest_port))

    def close(self) -> None:
        self.rx.close()
        if self.tx is not None:
            self.tx.close()


def open_endpoint(netns: str | None, ifname: str, *, raw: bool = True) -> Endpoint:
    """Open the sockets serving `ifname` in `netns` (None: this namespace).
    `raw=False` opens no packet socket (no CAP_NET_RAW needed; see `send`).

    Raises:
        ConfigError: bad namespace or interface name.
        DriverError: ("dhcp bind", ifname, errno): missing or down link,
            port 67 busy, no permission.
    """
    check_netns(netns)
    check_ifname(ifname)
    try:
        rx, tx = run_in(netns, lambda: _open(ifname, raw))
    except OSError as err:
        raise DriverError("dhcp bind", ifname, err.errno or errno.EIO) from err
    return Endpoint(ifname, netns, rx, tx)


def _open(ifname: str, raw: bool) -> tuple[socket.socket, socket.socket | None]:
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        require_up(rx, ifname)
        rx.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        rx.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, ifname.encode())
        rx.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
        with needs(
            "CAP_NET_BIND_SERVICE",
            f"bind UDP port {SERVER_PORT} on {ifname}",
            low_port(SERVER_PORT),
        ):
            rx.bind(("0.0.0.0", SERVER_PORT))
        rx.setblocking(False)
        if not raw:
            rx.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
            return rx, None
        with needs("CAP_NET_RAW", f"open a packet socket to send DHCP replies on {ifname}"):
            tx = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, 0)
    except BaseException:
        rx.close()
        raise
    return rx, tx


def serve(pairs: Sequence[tuple[Endpoint, SingleLeaseResponder]], stop: threading.Event) -> None:
    """Serve every (endpoint, responder) pair until `stop` is set."""
    with selectors.DefaultSelector() as sel:
        for endpoint, responder in pairs:
            sel.register(
                endpoint.rx, selectors.EVENT_READ, (endpoint, Exchange(responder, endpoint.ifname))
            )
        while not stop.is_set():
            for key, _ in sel.select(timeout=POLL_SECONDS):
                for _ in range(BURST):
                    if not serve_one(*key.data):
                        break


def serve_one(endpoint: Endpoint, exchange: Exchange) -> bool:
    """Serve one queued datagram; False when none was queued."""
    try:
        data, ancillary, _, _ = endpoint.rx.recvmsg(65535, _CMSG_SPACE)
    except (BlockingIOError, InterruptedError):
        return False
    except OSError as err:
        log.warning("dhcp recv on %s: %s", endpoint.ifname, err)
        return False
    unicast = _unicast(ancillary)
    out = exchange.handle(data, unicast)
    if out is not None:
        try:
            endpoint.send(out)
            exchange.responder.stats.answered_unicast += unicast
        except OSError as err:
            log.warning("dhcp send on %s to %s: %s", endpoint.ifname, out.reply.dest_ip, err)
    return True


def _unicast(ancillary: list[tuple[int, int, bytes]]) -> bool:
    for level, kind, data in ancillary:
        if level == socket.IPPROTO_IP and kind == IP_PKTINFO and len(data) >= _PKTINFO.size:
            return bool(_PKTINFO.unpack_from(data)[2] != b"\xff\xff\xff\xff")
    return False
