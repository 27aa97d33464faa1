"""The I/O shell around `Responder6` and the RA timer: DHCPv6 and RAs on a bridge.

Rules:
1. One `Endpoint6` per serving interface, its sockets opened inside the pod
   netns on a dedicated thread (`vmnet.driver.netns.run_in`); the caller
   never moves.
2. DHCPv6 in: an AF_PACKET socket on the bridge with a classic BPF filter
   (IPv6, next header UDP, destination port 547), because the MAC filter of
   the responder needs each request's source MAC, which a UDP socket does
   not tell. The filter is attached before the socket is bound, so no other
   frame is ever queued.
3. A UDP socket on [::]:547 (IPV6_V6ONLY, SO_REUSEADDR, SO_BINDTODEVICE, as
   KubeVirt) owns the port, joins ff02::1:2 on the bridge (so the bridge
   delivers the clients' multicast to the host, RFC 8415 §7.1) and sends the
   replies to the client's address and port with the bridge's scope id. What
   it receives is a copy of rule 2's frames and is discarded.
4. RAs: a raw ICMPv6 socket bound to the bridge, hop limits 255, filtered to
   router solicitations (ICMP6_FILTER) and joined to ff02::2. RAs go to
   ff02::1 from the bridge's link-local address, given explicitly with
   IPV6_PKTINFO (RFC 4861 §6.1.2 has clients drop RAs from other sources).
   The kernel computes the checksum (RFC 3542 §3.1).
5. The link-local address appears only once the bridge has a carrier (a tap
   whose VM has not started has none) and is tentative during DAD. Until it
   is usable an RA cannot be sent: the RA is retried every RETRY_SECONDS and
   counted in `stats.ra_deferred`. `open_endpoint6(wait_link_local=...)`
   waits for it when the caller wants that guarantee up front.
6. `serve6` never dies on input: undecodable packets are counted
   (`stats.dropped_malformed`) and logged at debug; send errors are logged.
   It returns within about POLL_SECONDS after `stop` is set.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import logging
import random
import selectors
import socket
import struct
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv6Address

from vmnet.addr import MacAddress
from vmnet.dhcp6.codec import decode, encode, ipv6_udp
from vmnet.dhcp6.ra import HOP_LIMIT, RaSchedule, build_ra, parse_rs
from vmnet.dhcp6.responder import Responder6
from vmnet.driver.netns import check_netns, run_in
from vmnet.errors import ConfigError, DhcpDecodeError, DriverError

SERVER_PORT = 547
ALL_DHCP = "ff02::1:2"
ALL_NODES = "ff02::1"
ALL_ROUTERS = "ff02::2"
ETH_P_IPV6 = 0x86DD
SIOCGIFFLAGS = 0x8913
IFF_UP = 0x1
SO_ATTACH_FILTER = 26
ICMP6_FILTER = 1  # linux/icmpv6.h; a set bit blocks that type
IFA_F_DADFAILED, IFA_F_TENTATIVE = 0x08, 0x40
POLL_SECONDS = 0.1
RETRY_SECONDS = 0.25
# ldb [6]; jeq #17 else drop; ldh [42]; jeq #547 else drop; ret all; ret 0
_BPF = ((0x30, 0, 0, 6), (0x15, 0, 3, 17), (0x28, 0, 0, 42), (0x15, 0, 1, SERVER_PORT),
        (0x06, 0, 0, 0xFFFF), (0x06, 0, 0, 0))

log = logging.getLogger("vmnet.dhcp6")


@dataclass(slots=True)
class Endpoint6:
    """The sockets serving one interface (rules 2-4)."""

    ifname: str
    netns: str | None
    ifindex: int
    rx: socket.socket
    udp: socket.socket
    icmp: socket.socket
    link_local: IPv6Address | None = None

    def send_reply(self, payload: bytes, dest: IPv6Address, port: int) -> None:
        self.udp.sendto(payload, (str(dest), port, 0, self.ifindex))

    def send_ra(self, message: bytes) -> None:
        """Send `message` to ff02::1 from the link-local (rule 5: OSError until usable)."""
        if self.link_local is None:
            self.link_local = self.find_link_local()
            if self.link_local is None:
                raise OSError(errno.EADDRNOTAVAIL, "no usable link-local address yet")
        info = self.link_local.packed + struct.pack("=I", self.ifindex)
        try:
            self.icmp.sendmsg([message], [(socket.IPPROTO_IPV6, socket.IPV6_PKTINFO, info)], 0,
                              (ALL_NODES, 0, 0, self.ifindex))
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
            interface's link-local address to leave DAD (rule 5).

    Raises:
        ConfigError: bad namespace or interface name.
        DriverError: ("dhcp6 bind", ifname, errno) for a missing or down link,
            a busy port or no permission; ("dhcp6 link-local", ifname,
            EADDRNOTAVAIL) when the wait runs out.
    """
    check_netns(netns)
    if not 0 < len(ifname) < 16 or "/" in ifname or any(c.isspace() for c in ifname):
        raise ConfigError("ifname", f"invalid interface name {ifname!r}")
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
    ifindex = socket.if_nametoindex(ifname)
    opened: list[socket.socket] = []
    try:
        opened.append(udp := socket.socket(socket.AF_INET6, socket.SOCK_DGRAM))
        ifreq = fcntl.ioctl(udp, SIOCGIFFLAGS, struct.pack("16sH14x", ifname.encode(), 0))
        if not struct.unpack("16sH14x", ifreq)[1] & IFF_UP:
            raise OSError(errno.ENETDOWN, "link is down")
        udp.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        udp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        udp.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, ifname.encode())
        udp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        udp.bind(("::", SERVER_PORT))
        _join(udp, ALL_DHCP, ifindex)
        opened.append(rx := socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, 0))
        _attach_bpf(rx)
        rx.bind((ifname, ETH_P_IPV6))
        opened.append(icmp := socket.socket(socket.AF_INET6, socket.SOCK_RAW,
                                            socket.IPPROTO_ICMPV6))
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
    program = ctypes.create_string_buffer(b"".join(struct.pack("HBBI", *i) for i in _BPF))
    fprog = struct.pack("HL", len(_BPF), ctypes.addressof(program))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


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


@dataclass(slots=True)
class _Lane:
    endpoint: Endpoint6
    responder: Responder6
    schedule: RaSchedule
    ra: bytes = field(init=False)

    def __post_init__(self) -> None:
        self.ra = build_ra(self.responder.config)


def serve6(
    pairs: Sequence[tuple[Endpoint6, Responder6]], stop: threading.Event, *,
    ra_interval: float = 10.0, rand: Callable[[], float] = random.random,
) -> None:
    """Serve DHCPv6 and send RAs on every (endpoint, responder) pair until `stop` is set.

    Args:
        ra_interval: MaxRtrAdvInterval in seconds (RFC 4861 §6.2.1; `vmnet.dhcp6.ra`).

    Raises:
        ConfigError: `ra_interval` is not positive.
    """
    if not isinstance(ra_interval, (int, float)) or not ra_interval > 0:
        raise ConfigError("ra_interval", f"must be a positive number, not {ra_interval!r}")
    lanes = [_Lane(ep, resp, RaSchedule(float(ra_interval), rand)) for ep, resp in pairs]
    handlers = ((lambda ep: ep.rx, _on_dhcp), (lambda ep: ep.udp, _drain),
                (lambda ep: ep.icmp, _on_rs))
    with selectors.DefaultSelector() as sel:
        for lane in lanes:
            for sock_of, handler in handlers:
                sel.register(sock_of(lane.endpoint), selectors.EVENT_READ, (lane, handler))
        while not stop.is_set():
            now = time.monotonic()
            for lane in lanes:
                if lane.schedule.due <= now:
                    _advertise(lane, now)
            wait = min([POLL_SECONDS] + [lane.schedule.timeout(now) for lane in lanes])
            for key, _ in sel.select(timeout=wait):
                lane, handler = key.data
                handler(lane)


def _advertise(lane: _Lane, now: float) -> None:
    try:
        lane.endpoint.send_ra(lane.ra)
    except OSError as err:
        lane.responder.stats.ra_deferred += 1
        lane.schedule.retry(now, RETRY_SECONDS)
        if lane.responder.stats.ra_deferred == 1 or err.errno != errno.EADDRNOTAVAIL:
            log.info("dhcp6: RA on %s deferred: %s", lane.endpoint.ifname, err)
        return
    lane.responder.stats.ra_sent += 1
    lane.schedule.sent_at(now)


def _on_dhcp(lane: _Lane) -> None:
    endpoint, responder = lane.endpoint, lane.responder
    try:
        data, addr = endpoint.rx.recvfrom(65535)
    except (BlockingIOError, InterruptedError):
        return
    if addr[2] == socket.PACKET_OUTGOING:
        return
    mac = MacAddress(addr[4][:6]) if len(addr[4]) >= 6 else None
    try:
        packet = ipv6_udp(data)
        reply = responder.respond(decode(packet.payload), src_mac=mac)
    except DhcpDecodeError as err:
        responder.stats.dropped_malformed += 1
        log.debug("dhcp6 on %s: dropped %d bytes: %s", endpoint.ifname, len(data), err)
        return
    except Exception:  # the server must outlive any single packet
        responder.stats.dropped_malformed += 1
        log.exception("dhcp6 on %s: responder failed", endpoint.ifname)
        return
    if reply is not None:
        try:
            endpoint.send_reply(encode(reply), packet.src, packet.src_port)
        except OSError as err:
            log.warning("dhcp6 send on %s to %s: %s", endpoint.ifname, packet.src, err)


def _drain(lane: _Lane) -> None:
    try:
        lane.endpoint.udp.recv(65535)
    except (BlockingIOError, InterruptedError):
        pass


def _on_rs(lane: _Lane) -> None:
    stats = lane.responder.stats
    try:
        data, ancillary, _, addr = lane.endpoint.icmp.recvmsg(1500, socket.CMSG_SPACE(4))
    except (BlockingIOError, InterruptedError):
        return
    hops = None
    for level, kind, value in ancillary:
        if level == socket.IPPROTO_IPV6 and kind == socket.IPV6_HOPLIMIT and len(value) >= 4:
            hops = struct.unpack("=i", value[:4])[0]
    try:
        rs = parse_rs(data, hops, IPv6Address(addr[0].split("%")[0]))
    except DhcpDecodeError as err:
        stats.rs_ignored += 1
        log.debug("dhcp6 on %s: %s", lane.endpoint.ifname, err)
        return
    want = lane.responder.config.client_mac
    if want is not None and rs.source_mac is not None and rs.source_mac != want:
        stats.rs_ignored += 1
        return
    stats.rs_received += 1
    lane.schedule.solicited(time.monotonic())
