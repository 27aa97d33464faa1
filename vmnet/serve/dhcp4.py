"""The thin I/O shell around `SingleLeaseResponder`: recv, decode, respond, send.

Rules:
1. One `Endpoint` per serving interface (a bridge `k6t-*`), opened inside
   the pod netns on a dedicated thread (`vmnet.core.netns.run_in`); the
   caller never moves.
2. Receive: a UDP socket on 0.0.0.0:67 with SO_REUSEADDR and
   SO_BINDTODEVICE(bridge). Several bridges in one netns each get their own
   socket and the kernel gives each the packets of its own device, unicast
   renewals to the bridge's server id included.
3. Send: an AF_PACKET socket (SOCK_DGRAM, so the kernel writes the Ethernet
   header with the bridge's current MAC) carrying IPv4 + UDP built by
   `codec.frame_ipv4_udp`, addressed to chaddr or ff:ff:ff:ff:ff:ff. This
   needs neither ARP nor a route to the client: the bridge's only IPv4 is a
   link-local /32 and the client's address is not local to the pod.
4. IP_PKTINFO tells the header destination of each request; requests sent
   to an address rather than broadcast are counted in
   `stats.received_unicast` (a RENEWING client, RFC 2131 §4.4.5), and
   those answered in `stats.answered_unicast`.
5. `serve` never dies on input: undecodable packets are counted
   (`stats.dropped_malformed`) and logged at debug; send errors are logged.
   It returns within about 0.1 s after `stop` is set.
6. Each wake-up serves up to `BURST` queued packets per endpoint before
   polling again: one select per burst, not per packet, under load.
7. A DISCOVER identical to an earlier one but for xid and secs (a client
   retransmitting, RFC 2131 §4.1) gets the earlier OFFER again, re-framed
   with its own xid, and the same counters move (`received`, `offered`).
   The OFFER depends on nothing else of the request, and the responder is
   immutable; OFFERs that dropped options (and logged it) are not kept. At
   most `MEMO_SIZE` requests are remembered per endpoint.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import selectors
import socket
import struct
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

from vmnet.core.errors import ConfigError, DhcpDecodeError, DriverError
from vmnet.core.netns import check_netns, run_in
from vmnet.protocols.dhcp4.codec import decode, encode, frame_ipv4_udp
from vmnet.protocols.dhcp4.options import MessageType
from vmnet.protocols.dhcp4.responder import SERVER_PORT, Reply, SingleLeaseResponder

ETH_P_IP = 0x0800
SIOCGIFFLAGS = 0x8913
IP_PKTINFO = 8  # linux/in.h; struct in_pktinfo {int ifindex; in_addr spec_dst, addr}
_PKTINFO = struct.Struct("=i4s4s")
IFF_UP = 0x1
POLL_SECONDS = 0.1
BURST = 64  # packets served per endpoint per wake-up: drains a queue, stays fair
_CMSG_SPACE = socket.CMSG_SPACE(_PKTINFO.size)
MEMO_SIZE = 8

log = logging.getLogger("vmnet.protocols.dhcp4")


@dataclass(slots=True)
class Endpoint:
    """The sockets serving one interface."""

    ifname: str
    netns: str | None
    rx: socket.socket
    tx: socket.socket
    offers: dict[bytes, tuple[Reply, bytes]] = field(default_factory=dict)

    def send(self, reply: Reply, payload: bytes | None = None) -> None:
        """Send `reply` (or its already encoded `payload`) as one Ethernet frame."""
        if payload is None:
            payload = encode(reply.message)
        packet = frame_ipv4_udp(
            reply.src_ip, reply.dest_ip, (SERVER_PORT, reply.dest_port), payload
        )
        self.tx.sendto(packet, (self.ifname, ETH_P_IP, 0, 0, reply.dest_mac.packed))

    def close(self) -> None:
        self.rx.close()
        self.tx.close()


def open_endpoint(netns: str | None, ifname: str) -> Endpoint:
    """Open the sockets serving `ifname` in `netns` (None: this namespace).

    Raises:
        ConfigError: bad namespace or interface name.
        DriverError: ("dhcp bind", ifname, errno): missing or down link,
            port 67 busy, no permission.
    """
    check_netns(netns)
    if not 0 < len(ifname) < 16 or "/" in ifname or any(c.isspace() for c in ifname):
        raise ConfigError("ifname", f"invalid interface name {ifname!r}")
    try:
        rx, tx = run_in(netns, lambda: _open(ifname))
    except OSError as err:
        raise DriverError("dhcp bind", ifname, err.errno or errno.EIO) from err
    return Endpoint(ifname, netns, rx, tx)


def _open(ifname: str) -> tuple[socket.socket, socket.socket]:
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        ifreq = fcntl.ioctl(rx, SIOCGIFFLAGS, struct.pack("16sH14x", ifname.encode(), 0))
        if not struct.unpack("16sH14x", ifreq)[1] & IFF_UP:
            raise OSError(errno.ENETDOWN, "link is down")
        rx.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        rx.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, ifname.encode())
        rx.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
        rx.bind(("0.0.0.0", SERVER_PORT))
        rx.setblocking(False)
        tx = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, 0)
    except BaseException:
        rx.close()
        raise
    return rx, tx


def serve(pairs: Sequence[tuple[Endpoint, SingleLeaseResponder]], stop: threading.Event) -> None:
    """Serve every (endpoint, responder) pair until `stop` is set."""
    with selectors.DefaultSelector() as sel:
        for endpoint, responder in pairs:
            sel.register(endpoint.rx, selectors.EVENT_READ, (endpoint, responder))
        while not stop.is_set():
            for key, _ in sel.select(timeout=POLL_SECONDS):
                for _ in range(BURST):
                    if not _handle_one(*key.data):
                        break


def _handle_one(endpoint: Endpoint, responder: SingleLeaseResponder) -> bool:
    """Serve one queued packet; False when none was queued."""
    try:
        data, ancillary, _, _ = endpoint.rx.recvmsg(65535, _CMSG_SPACE)
    except (BlockingIOError, InterruptedError):
        return False
    except OSError as err:
        log.warning("dhcp recv on %s: %s", endpoint.ifname, err)
        return False
    unicast = _unicast(ancillary)
    responder.stats.received_unicast += unicast
    key = data[:4] + data[10:]
    known = endpoint.offers.get(key)
    if known is not None:
        responder.stats.received += 1
        responder.stats.offered += 1
        reply, payload = known
        _send(endpoint, responder, reply, payload[:4] + data[4:8] + payload[8:], unicast)
        return True
    answer = _respond(endpoint, responder, data)
    if answer is not None:
        reply, payload, memo = answer
        if memo:
            if len(endpoint.offers) >= MEMO_SIZE:
                endpoint.offers.clear()
            endpoint.offers[key] = (reply, payload)
        _send(endpoint, responder, reply, payload, unicast)
    return True


def _respond(
    endpoint: Endpoint, responder: SingleLeaseResponder, data: bytes
) -> tuple[Reply, bytes, bool] | None:
    """(reply, its encoding, whether rule 7 may replay it), or None for silence."""
    try:
        msg = decode(data)
        dropped = responder.stats.options_dropped
        reply = responder.respond(msg)
    except DhcpDecodeError as err:
        responder.stats.dropped_malformed += 1
        log.debug("dhcp on %s: dropped %d bytes: %s", endpoint.ifname, len(data), err)
        return None
    except Exception:  # the server must outlive any single packet
        responder.stats.dropped_malformed += 1
        log.exception("dhcp on %s: responder failed", endpoint.ifname)
        return None
    if reply is None:
        return None
    memo = (
        msg.message_type == MessageType.DISCOVER
        and reply.message.message_type == MessageType.OFFER
        and responder.stats.options_dropped == dropped
    )
    return reply, encode(reply.message), memo


def _send(
    endpoint: Endpoint, responder: SingleLeaseResponder, reply: Reply, payload: bytes, unicast: bool
) -> None:
    try:
        endpoint.send(reply, payload)
        responder.stats.answered_unicast += unicast
    except OSError as err:
        log.warning("dhcp send on %s to %s: %s", endpoint.ifname, reply.dest_ip, err)


def _unicast(ancillary: list[tuple[int, int, bytes]]) -> bool:
    for level, kind, data in ancillary:
        if level == socket.IPPROTO_IP and kind == IP_PKTINFO and len(data) >= _PKTINFO.size:
            return bool(_PKTINFO.unpack_from(data)[2] != b"\xff\xff\xff\xff")
    return False
