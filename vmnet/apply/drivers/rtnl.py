"""The netlink driver vmnet uses: rtnetlink requests packed and parsed here.

Every verb of `vmnet.apply.drivers.Netlink` is one rtnetlink request (or
one dump) built with `struct` on a plain NETLINK_ROUTE socket, following
rtnetlink(7), linux/rtnetlink.h, linux/if_link.h and linux/if_addr.h. The
socket is opened inside the namespace at construction, on a thread that
entered it (`vmnet.core.netns`), so nothing moves the caller and a missing
namespace is an error, never silently created.

Why not pyroute2 (which `vmnet.apply.drivers.netlink` still wraps, and
which vmnet.testing uses): importing any pyroute2 module imports its whole
package, about 190-270 ms and 15 MB per process, and its asyncio request
path costs 0.2-0.9 ms per request; these requests cost a few microseconds
and this module imports only the standard library. A plug is a process
per pod (a CNI plugin, a launcher's `vmnet plug`), so that is the time a
user waits. docs/performance.md has the numbers. Both drivers read the
kernel into the same `LinkState`/`AddrState`/`RouteState` values; a test
holds them equal on real namespaces.

An NLMSG_ERROR answer, or a socket failure, becomes
`DriverError(op, target, errno)`.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import struct
from collections.abc import Iterator

from vmnet.core.addr import IPAddress, IPInterface, MacAddress
from vmnet.core.errors import DriverError
from vmnet.core.netns import Worker, run_in
from vmnet.plan.state import RT_TABLE_MAIN, AddrState, LinkState, RouteState

NETLINK_ROUTE, IFF_UP, AF_INET, AF_INET6, AF_BRIDGE = 0, 0x1, 2, 10, 7
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_ACK, NLM_F_DUMP = 0x1, 0x4, 0x300
NLM_F_EXCL, NLM_F_CREATE, NLM_F_APPEND = 0x200, 0x400, 0x800
RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK, RTM_SETLINK = 16, 17, 18, 19
RTM_NEWADDR, RTM_DELADDR, RTM_GETADDR = 20, 21, 22
RTM_NEWROUTE, RTM_DELROUTE, RTM_GETROUTE = 24, 25, 26
RTM_GETNEIGH, NDA_DST, NDA_LLADDR = 30, 1, 2
NUD_INCOMPLETE, NUD_FAILED, NUD_NOARP = 0x01, 0x20, 0x40
IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_MASTER = 1, 3, 4, 10
IFLA_PROTINFO, IFLA_LINKINFO, IFLA_IFALIAS = 12, 18, 20
IFLA_INFO_KIND, IFLA_INFO_SLAVE_KIND, IFLA_INFO_SLAVE_DATA = 1, 4, 5
IFLA_BRPORT_LEARNING = 8
IFA_ADDRESS, IFA_LOCAL, IFA_BROADCAST, IFA_FLAGS = 1, 2, 4, 8
RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_PRIORITY, RTA_PREFSRC, RTA_TABLE = 1, 4, 5, 6, 7, 15
NLA_F_NESTED, NLA_TYPE_MASK = 0x8000, 0x3FFF
SOL_NETLINK, NETLINK_GET_STRICT_CHK = 270, 12

# nlmsghdr, ifinfomsg, ifaddrmsg, rtmsg, nlattr, u32 (host byte order)
_NLMSG = struct.Struct("=IHHII")
_IFINFO = struct.Struct("=BxHiII")
_IFADDR = struct.Struct("=BBBBi")
_RTMSG = struct.Struct("=BBBBBBBBI")
_NDMSG = struct.Struct("=BBHiHBB")
_NLA = struct.Struct("=HH")
_U32 = struct.Struct("=I")
_ERRNO = struct.Struct("=i")
_CREATE = NLM_F_CREATE | NLM_F_EXCL
RECV_BUFFER = 1 << 17


def _attr(kind: int, value: bytes) -> bytes:
    return _NLA.pack(len(value) + 4, kind) + value + b"\0" * (-len(value) % 4)


def _u32(kind: int, value: int) -> bytes:
    return _attr(kind, _U32.pack(value))


def _string(kind: int, value: str) -> bytes:
    return _attr(kind, value.encode() + b"\0")


def _attrs(data: bytes, start: int = 0) -> dict[int, bytes]:
    """type -> payload of the attributes in `data[start:]` (the first one wins)."""
    out: dict[int, bytes] = {}
    pos, end = start, len(data)
    while pos + 4 <= end:
        length, kind = _NLA.unpack_from(data, pos)
        if length < 4:
            break
        out.setdefault(kind & NLA_TYPE_MASK, data[pos + 4 : pos + length])
        pos += (length + 3) & ~3
    return out


def _nested(data: bytes | None, kind: int) -> bytes | None:
    return None if data is None else _attrs(data).get(kind)


def _cstr(value: bytes | None) -> str | None:
    return None if value is None else value.split(b"\0", 1)[0].decode()


def _int(value: bytes | None) -> int | None:
    return None if value is None or len(value) < 4 else int(_U32.unpack_from(value)[0])


def _ip(value: bytes | None) -> IPAddress | None:
    return None if not value else ipaddress.ip_address(value)


def _netlink_socket() -> socket.socket:
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_ROUTE)
    try:
        sock.bind((0, 0))
        # the kernel then filters address dumps by ifa_index (Linux 4.20+)
        sock.setsockopt(SOL_NETLINK, NETLINK_GET_STRICT_CHK, 1)
    except OSError as err:
        if err.errno != errno.ENOPROTOOPT:
            sock.close()
            raise
    return sock


class RtnlNetlink:
    """`vmnet.apply.drivers.Netlink` over a raw rtnetlink socket in one namespace."""

    def __init__(self, netns: str | None = None, worker: Worker | None = None) -> None:
        self.netns = netns
        self._seq = 0
        try:
            self._sock = worker.run(_netlink_socket) if worker else run_in(netns, _netlink_socket)
        except OSError as err:
            raise DriverError("netlink open", netns or "self", err.errno or errno.EIO) from err

    def close(self) -> None:
        self._sock.close()

    def _request(self, op: str, target: str, kind: int, flags: int, body: bytes) -> list[bytes]:
        """Send one request; the payloads of its answer (none for an ACK)."""
        self._seq += 1
        header = _NLMSG.pack(16 + len(body), kind, NLM_F_REQUEST | flags, self._seq, 0)
        try:
            self._sock.send(header + body)
            return list(self._answer(self._seq, flags & NLM_F_DUMP == NLM_F_DUMP, op, target))
        except OSError as err:
            raise DriverError(op, target, err.errno or errno.EIO) from err

    def _answer(self, seq: int, dump: bool, op: str, target: str) -> Iterator[bytes]:
        while True:
            data = self._sock.recv(RECV_BUFFER)
            pos = 0
            while pos + 16 <= len(data):
                length, kind, _, mseq, _ = _NLMSG.unpack_from(data, pos)
                if length < 16:
                    raise DriverError(op, target, errno.EPROTO)
                payload = data[pos + 16 : pos + length]
                pos += (length + 3) & ~3
                if mseq != seq:
                    continue  # an answer to an earlier, abandoned request
                if kind == NLMSG_ERROR:
                    code = -_ERRNO.unpack_from(payload)[0]
                    if code:
                        raise DriverError(op, target, code)
                    return
                if kind == NLMSG_DONE:  # a dump's error comes in its DONE message
                    code = -_ERRNO.unpack_from(payload)[0] if len(payload) >= 4 else 0
                    if code > 0:
                        raise DriverError(op, target, code)
                    return
                yield payload
                if not dump:
                    return

    def _do(self, op: str, target: str, kind: int, body: bytes, flags: int = 0) -> None:
        self._request(op, target, kind, NLM_F_ACK | flags, body)

    def links(self, addresses: bool = True) -> list[LinkState]:
        msgs = self._request("link dump", "*", RTM_GETLINK, NLM_F_DUMP, _IFINFO.pack(0, 0, 0, 0, 0))
        by_index: dict[int, list[AddrState]] = {}
        if addresses:
            for index, addr in self._addresses(0):
                by_index.setdefault(index, []).append(addr)
        return [_link_state(m, by_index) for m in msgs]

    def _addresses(self, index: int) -> Iterator[tuple[int, AddrState]]:
        """The addresses of link `index` (0: of every link), IPv4 first."""
        target = f"#{index}" if index else "*"
        body = _IFADDR.pack(0, 0, 0, 0, index)
        for msg in self._request("addr dump", target, RTM_GETADDR, NLM_F_DUMP, body):
            at = _IFADDR.unpack_from(msg)[4]
            if not index or at == index:
                yield at, _addr_state(msg)

    def link(
        self, *, name: str | None = None, index: int | None = None, addresses: bool = True
    ) -> LinkState | None:
        if index is not None:
            target, body = f"#{index}", _IFINFO.pack(0, 0, index, 0, 0)
        elif name:
            target, body = name, _IFINFO.pack(0, 0, 0, 0, 0) + _string(IFLA_IFNAME, name)
        else:
            return None
        try:
            msgs = self._request("link get", target, RTM_GETLINK, 0, body)
        except DriverError as err:
            if err.errno in (errno.ENODEV, errno.ENOENT, errno.EINVAL):
                return None
            raise
        if not msgs:
            return None
        found = _IFINFO.unpack_from(msgs[0])[2]
        addrs = {found: [a for _, a in self._addresses(found)]} if addresses else {}
        return _link_state(msgs[0], addrs)

    def routes(self) -> list[RouteState]:
        out = []
        for family in (AF_INET, AF_INET6):
            body = _RTMSG.pack(family, 0, 0, 0, 0, 0, 0, 0, 0)
            for msg in self._request("route dump", "main", RTM_GETROUTE, NLM_F_DUMP, body):
                route = _route_state(msg)
                if route.table == RT_TABLE_MAIN:
                    out.append(route)
        return out

    def neighbours(self, index: int) -> list[tuple[IPAddress, MacAddress]]:
        """The IPv6 neighbour entries of link `index` that hold a link-layer
        address (not INCOMPLETE, FAILED or NOARP: the multicast mappings), as
        `ip -6 neigh show dev` lists them."""
        # a strict dump request must leave ndm_ifindex 0 (NDA_IFINDEX filters); we filter here
        body = _NDMSG.pack(AF_INET6, 0, 0, 0, 0, 0, 0)
        out = []
        for msg in self._request("neigh dump", f"#{index}", RTM_GETNEIGH, NLM_F_DUMP, body):
            _, _, _, ifindex, state, _, _ = _NDMSG.unpack_from(msg)
            attrs = _attrs(msg, _NDMSG.size)
            ip, lladdr = _ip(attrs.get(NDA_DST)), attrs.get(NDA_LLADDR)
            if ifindex != index or ip is None or lladdr is None or len(lladdr) != 6:
                continue
            if not state & (NUD_INCOMPLETE | NUD_FAILED | NUD_NOARP):
                out.append((ip, MacAddress(lladdr)))
        return out

    def link_add(self, name: str, kind: str, *, mac: MacAddress | None = None) -> None:
        info = _attr(IFLA_LINKINFO | NLA_F_NESTED, _string(IFLA_INFO_KIND, kind))
        attrs = _string(IFLA_IFNAME, name) + info
        if mac is not None:
            attrs += _attr(IFLA_ADDRESS, mac.packed)
        body = _IFINFO.pack(0, 0, 0, 0, 0) + attrs
        self._do(f"link add {kind}", name, RTM_NEWLINK, body, _CREATE)

    def link_del(self, index: int) -> None:
        self._do("link del", f"#{index}", RTM_DELLINK, _IFINFO.pack(0, 0, index, 0, 0))

    def link_set(
        self,
        index: int,
        *,
        name: str | None = None,
        mac: MacAddress | None = None,
        mtu: int | None = None,
        master: int | None = None,
        up: bool | None = None,
    ) -> None:
        wanted = {
            "ifname": None if name is None else _string(IFLA_IFNAME, name),
            "address": None if mac is None else _attr(IFLA_ADDRESS, mac.packed),
            "mtu": None if mtu is None else _u32(IFLA_MTU, mtu),
            "master": None if master is None else _u32(IFLA_MASTER, master),
            "state": None if up is None else b"",
        }
        fields = [key for key, value in wanted.items() if value is not None]
        head = _IFINFO.pack(0, 0, index, IFF_UP if up else 0, 0 if up is None else IFF_UP)
        body = head + b"".join(value for value in wanted.values() if value)
        self._do(f"link set {','.join(fields)}", f"#{index}", RTM_NEWLINK, body)

    def _addr_body(self, index: int, interface: IPInterface) -> bytes:
        ip = interface.ip.packed
        family = AF_INET if interface.version == 4 else AF_INET6
        head = _IFADDR.pack(family, interface.network.prefixlen, 0, 0, index)
        local = _attr(IFA_LOCAL, ip) if interface.version == 4 else b""
        return head + local + _attr(IFA_ADDRESS, ip)

    def addr_add(
        self, index: int, interface: IPInterface, *, broadcast: IPAddress | None = None
    ) -> None:
        body = self._addr_body(index, interface)
        if broadcast is not None:
            body += _attr(IFA_BROADCAST, broadcast.packed)
        self._do("addr add", f"{interface}@#{index}", RTM_NEWADDR, body, _CREATE)

    def addr_del(self, index: int, interface: IPInterface) -> None:
        body = self._addr_body(index, interface)
        self._do("addr del", f"{interface}@#{index}", RTM_DELADDR, body)

    def route_add(self, route: RouteState) -> None:
        """Add `route`, also next to another route to the same destination and
        metric through another gateway (IPv4 keeps both, as `ip route append`;
        a CNI plugin can leave a pod two default routes)."""
        target = str(route.destination)
        try:
            self._do("route add", target, RTM_NEWROUTE, _route_body(route), _CREATE)
        except DriverError as err:
            if err.errno != errno.EEXIST or route.destination.version != 4:
                raise
            flags = NLM_F_CREATE | NLM_F_APPEND
            self._do("route append", target, RTM_NEWROUTE, _route_body(route), flags)

    def route_del(self, route: RouteState) -> None:
        self._do("route del", str(route.destination), RTM_DELROUTE, _route_body(route))

    def learning(self, index: int) -> bool | None:
        """IFLA_BRPORT_LEARNING of a bridge port; None for a link in no bridge."""
        link = self.link(index=index, addresses=False)
        return None if link is None else link.learning

    def set_learning(self, index: int, on: bool) -> None:
        value = _attr(IFLA_BRPORT_LEARNING, bytes((int(on),)))
        body = _IFINFO.pack(AF_BRIDGE, 0, index, 0, 0) + _attr(IFLA_PROTINFO | NLA_F_NESTED, value)
        self._do("brport set learning", f"#{index}", RTM_SETLINK, body)

    def set_alias(self, index: int, alias: str) -> None:
        body = _IFINFO.pack(0, 0, index, 0, 0) + _attr(IFLA_IFALIAS, alias.encode())
        self._do("link set alias", f"#{index}", RTM_NEWLINK, body)


def _route_body(route: RouteState) -> bytes:
    dst = route.destination
    family = AF_INET if dst.version == 4 else AF_INET6
    table = min(route.table, 255)
    head = _RTMSG.pack(
        family, dst.prefixlen, 0, 0, table, route.protocol, route.scope, route.type, 0
    )
    attrs = _u32(RTA_TABLE, route.table)
    if dst.prefixlen:
        attrs += _attr(RTA_DST, dst.network_address.packed)
    for kind, ip in ((RTA_GATEWAY, route.gateway), (RTA_PREFSRC, route.prefsrc)):
        if ip is not None:
            attrs += _attr(kind, ip.packed)
    for kind, number in ((RTA_OIF, route.oif), (RTA_PRIORITY, route.priority)):
        if number is not None:
            attrs += _u32(kind, number)
    return head + attrs


def _link_state(msg: bytes, addrs: dict[int, list[AddrState]]) -> LinkState:
    _, _, index, flags, _ = _IFINFO.unpack_from(msg)
    attrs = _attrs(msg, _IFINFO.size)
    mac = attrs.get(IFLA_ADDRESS)
    info = attrs.get(IFLA_LINKINFO)
    learning = None
    if _cstr(_nested(info, IFLA_INFO_SLAVE_KIND)) == "bridge":
        value = _nested(_nested(info, IFLA_INFO_SLAVE_DATA), IFLA_BRPORT_LEARNING)
        learning = None if not value else bool(value[0])
    return LinkState(
        index=index,
        name=_cstr(attrs.get(IFLA_IFNAME)) or "",
        kind=_cstr(_nested(info, IFLA_INFO_KIND)),
        mac=MacAddress(mac) if mac and len(mac) == 6 else None,
        mtu=_int(attrs.get(IFLA_MTU)) or 0,
        up=bool(flags & IFF_UP),
        master=_int(attrs.get(IFLA_MASTER)),
        addresses=tuple(addrs.get(index, ())),
        learning=learning,
    )


def _addr_state(msg: bytes) -> AddrState:
    family, prefixlen, flags, scope, _ = _IFADDR.unpack_from(msg)
    attrs = _attrs(msg, _IFADDR.size)
    raw = attrs.get(IFA_ADDRESS)
    if family == AF_INET and attrs.get(IFA_LOCAL):
        raw = attrs[IFA_LOCAL]
    extra = _int(attrs.get(IFA_FLAGS))
    return AddrState(
        ipaddress.ip_interface(f"{_ip(raw)}/{prefixlen}"),
        extra if extra is not None else flags,
        scope,
        _ip(attrs.get(IFA_BROADCAST)),
    )


def _route_state(msg: bytes) -> RouteState:
    family, dst_len, _, _, table, proto, scope, kind, _ = _RTMSG.unpack_from(msg)
    attrs = _attrs(msg, _RTMSG.size)
    dst = _ip(attrs.get(RTA_DST)) or ("0.0.0.0" if family == AF_INET else "::")
    return RouteState(
        destination=ipaddress.ip_network(f"{dst}/{dst_len}", strict=False),
        gateway=_ip(attrs.get(RTA_GATEWAY)),
        oif=_int(attrs.get(RTA_OIF)),
        protocol=proto,
        scope=scope,
        type=kind,
        priority=_int(attrs.get(RTA_PRIORITY)),
        prefsrc=_ip(attrs.get(RTA_PREFSRC)),
        table=_int(attrs.get(RTA_TABLE)) or table,
    )
