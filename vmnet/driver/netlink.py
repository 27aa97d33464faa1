"""The netlink driver: rtnetlink requests on a socket bound to one namespace.

Rules:
1. The socket is opened inside the namespace at construction, on a thread
   that entered it (`vmnet.driver.netns.run_in`); a missing namespace is an
   error, never silently created.
2. Each verb is one request (or dump) built and parsed here with `struct`
   (rtnetlink(7), linux/rtnetlink.h, linux/if_link.h): tens of microseconds,
   where pyroute2 took about 0.5 ms per request (docs/performance.md).
3. `link` asks for one link and its addresses; only `links` dumps them all.
   `routes` dumps the main table, IPv4 then IPv6 (kernel dump order).
4. An NLMSG_ERROR or a socket failure becomes `DriverError(op, target, errno)`.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import struct
from collections.abc import Iterator

from vmnet.addr import IPAddress, IPInterface, MacAddress
from vmnet.driver.netns import run_in
from vmnet.errors import DriverError
from vmnet.model import RT_TABLE_MAIN, AddrState, LinkState, RouteState

NETLINK_ROUTE, IFF_UP, AF_INET, AF_INET6, AF_BRIDGE = 0, 0x1, 2, 10, 7
NLMSG_ERROR, NLMSG_DONE, NLM_F_REQUEST, NLM_F_ACK, NLM_F_DUMP = 2, 3, 0x1, 0x4, 0x300
NLM_F_EXCL, NLM_F_CREATE = 0x200, 0x400
RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK, RTM_SETLINK = 16, 17, 18, 19
RTM_NEWADDR, RTM_DELADDR, RTM_GETADDR = 20, 21, 22
RTM_NEWROUTE, RTM_DELROUTE, RTM_GETROUTE = 24, 25, 26
IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_MASTER = 1, 3, 4, 10
IFLA_PROTINFO, IFLA_LINKINFO, IFLA_BRPORT_LEARNING = 12, 18, 8
IFLA_INFO_KIND, IFLA_INFO_SLAVE_KIND, IFLA_INFO_SLAVE_DATA = 1, 4, 5
IFA_ADDRESS, IFA_LOCAL, IFA_BROADCAST, IFA_FLAGS = 1, 2, 4, 8
RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_PRIORITY, RTA_PREFSRC, RTA_TABLE = 1, 4, 5, 6, 7, 15
NLA_F_NESTED, NLA_TYPE_MASK = 0x8000, 0x3FFF

# nlmsghdr, ifinfomsg, ifaddrmsg, rtmsg, nlattr, u32 (native byte order)
_NLMSG, _IFINFO, _IFADDR, _RTMSG, _NLA, _U32 = (
    struct.Struct(f) for f in ("=IHHII", "=BxHiII", "=BBBBi", "=BBBBBBBBI", "=HH", "=I"))
_CREATE, RECV_BUFFER = NLM_F_CREATE | NLM_F_EXCL, 1 << 16


def _attr(kind: int, value: bytes) -> bytes:
    pad = -(len(value) + 4) % 4
    return _NLA.pack(len(value) + 4, kind) + value + b"\0" * pad


def _u32(kind: int, value: int) -> bytes:
    return _attr(kind, _U32.pack(value))


def _string(kind: int, value: str) -> bytes:
    return _attr(kind, value.encode() + b"\0")


def _attrs(data: bytes, start: int = 0) -> dict[int, bytes]:
    """type -> payload of the attributes in `data[start:]` (first one wins)."""
    out: dict[int, bytes] = {}
    pos, end = start, len(data)
    while pos + 4 <= end:
        length, kind = _NLA.unpack_from(data, pos)
        if length < 4:
            break
        out.setdefault(kind & NLA_TYPE_MASK, data[pos + 4 : pos + length])
        pos += (length + 3) & ~3
    return out


def _cstr(value: bytes | None) -> str | None:
    return None if value is None else value.split(b"\0", 1)[0].decode()


def _int(value: bytes | None) -> int | None:
    return None if value is None or len(value) < 4 else int(_U32.unpack_from(value)[0])


def _ip(value: bytes | None) -> IPAddress | None:
    return None if value is None else ipaddress.ip_address(value)


class Pyroute2Netlink:
    """`vmnet.driver.Netlink` over a raw rtnetlink socket (name kept for callers)."""

    def __init__(self, netns: str | None = None) -> None:
        self.netns = netns
        self._seq = 0
        try:
            self._sock = run_in(netns, _netlink_socket)
        except OSError as err:
            raise DriverError("netlink open", netns or "self", err.errno or errno.EIO) from err

    def close(self) -> None:
        self._sock.close()

    def _request(self, op: str, target: str, kind: int, flags: int, body: bytes) -> list[bytes]:
        """Send one request; return the payloads of its answer (rule 4)."""
        self._seq += 1
        seq = self._seq
        try:
            self._sock.send(_NLMSG.pack(16 + len(body), kind, NLM_F_REQUEST | flags, seq, 0) + body)
            return list(self._answer(seq, flags & NLM_F_DUMP == NLM_F_DUMP, op, target))
        except OSError as err:
            raise DriverError(op, target, err.errno or errno.EIO) from err

    def _answer(self, seq: int, dump: bool, op: str, target: str) -> Iterator[bytes]:
        while True:
            data = self._sock.recv(RECV_BUFFER)
            pos = 0
            while pos + 16 <= len(data):
                length, kind, _, mseq, _ = _NLMSG.unpack_from(data, pos)
                payload = data[pos + 16 : pos + length]
                pos += (length + 3) & ~3
                if mseq != seq:
                    continue
                code = -struct.unpack_from("=i", payload)[0] if kind == NLMSG_ERROR else 0
                if code:
                    raise DriverError(op, target, code)
                if kind in (NLMSG_ERROR, NLMSG_DONE):
                    return
                yield payload
                if not dump:
                    return

    def _do(self, op: str, target: str, kind: int, body: bytes, flags: int = 0) -> None:
        self._request(op, target, kind, NLM_F_ACK | flags, body)

    def _get_link(self, op: str, target: str, body: bytes) -> list[bytes]:
        try:
            return self._request(op, target, RTM_GETLINK, 0, body)
        except DriverError as err:
            if err.errno != errno.ENODEV:
                raise
            return []

    def links(self) -> list[LinkState]:
        msgs = self._request("link dump", "*", RTM_GETLINK, NLM_F_DUMP,
                             _IFINFO.pack(0, 0, 0, 0, 0))
        by_index: dict[int, list[AddrState]] = {}
        for index, addr in self._addresses(None):
            by_index.setdefault(index, []).append(addr)
        return [_link_state(m, by_index) for m in msgs]

    def _addresses(self, index: int | None) -> Iterator[tuple[int, AddrState]]:
        for msg in self._request("addr dump", "*" if index is None else f"#{index}",
                                 RTM_GETADDR, NLM_F_DUMP, _IFADDR.pack(0, 0, 0, 0, 0)):
            at = _IFADDR.unpack_from(msg)[4]
            if index is None or at == index:
                yield at, _addr_state(msg)

    def link(self, *, name: str | None = None, index: int | None = None) -> LinkState | None:
        if index is not None:
            target, body = f"#{index}", _IFINFO.pack(0, 0, index, 0, 0)
        elif name:
            target, body = name, _IFINFO.pack(0, 0, 0, 0, 0) + _string(IFLA_IFNAME, name)
        else:
            return None
        msgs = self._get_link("link get", target, body)
        if not msgs:
            return None
        found = _IFINFO.unpack_from(msgs[0])[2]
        return _link_state(msgs[0], {found: [a for _, a in self._addresses(found)]})

    def routes(self) -> list[RouteState]:
        out: list[RouteState] = []
        for family in (AF_INET, AF_INET6):
            body = _RTMSG.pack(family, 0, 0, 0, 0, 0, 0, 0, 0)
            msgs = self._request("route dump", "main", RTM_GETROUTE, NLM_F_DUMP, body)
            out += [r for r in map(_route_state, msgs) if r.table == RT_TABLE_MAIN]
        return out

    def link_add(self, name: str, kind: str, *, mac: MacAddress | None = None) -> None:
        attrs = _string(IFLA_IFNAME, name) + _attr(
            IFLA_LINKINFO | NLA_F_NESTED, _string(IFLA_INFO_KIND, kind))
        if mac is not None:
            attrs += _attr(IFLA_ADDRESS, mac.packed)
        self._do(f"link add {kind}", name, RTM_NEWLINK, _IFINFO.pack(0, 0, 0, 0, 0) + attrs,
                 _CREATE)

    def link_del(self, index: int) -> None:
        self._do("link del", f"#{index}", RTM_DELLINK, _IFINFO.pack(0, 0, index, 0, 0))

    def link_set(self, index: int, *, name: str | None = None, mac: MacAddress | None = None,
                 mtu: int | None = None, master: int | None = None,
                 up: bool | None = None) -> None:
        wanted = {"ifname": None if name is None else _string(IFLA_IFNAME, name),
                  "address": None if mac is None else _attr(IFLA_ADDRESS, mac.packed),
                  "mtu": None if mtu is None else _u32(IFLA_MTU, mtu),
                  "master": None if master is None else _u32(IFLA_MASTER, master),
                  "state": None if up is None else b""}
        fields = [k for k, v in wanted.items() if v is not None]
        change = 0 if up is None else IFF_UP
        head = _IFINFO.pack(0, 0, index, IFF_UP if up else 0, change)
        self._do(f"link set {','.join(fields)}", f"#{index}", RTM_NEWLINK,
                 head + b"".join(v for v in wanted.values() if v is not None))

    def _addr_body(self, index: int, interface: IPInterface) -> bytes:
        ip = interface.ip.packed
        family = AF_INET if interface.version == 4 else AF_INET6
        head = _IFADDR.pack(family, interface.network.prefixlen, 0, 0, index)
        local = _attr(IFA_LOCAL, ip) if interface.version == 4 else b""
        return head + local + _attr(IFA_ADDRESS, ip)

    def addr_add(self, index: int, interface: IPInterface, *,
                 broadcast: IPAddress | None = None) -> None:
        body = self._addr_body(index, interface)
        if broadcast is not None:
            body += _attr(IFA_BROADCAST, broadcast.packed)
        self._do("addr add", f"{interface}@#{index}", RTM_NEWADDR, body, _CREATE)

    def addr_del(self, index: int, interface: IPInterface) -> None:
        self._do("addr del", f"{interface}@#{index}", RTM_DELADDR,
                 self._addr_body(index, interface))

    def route_add(self, route: RouteState) -> None:
        self._do("route add", str(route.destination), RTM_NEWROUTE, _route_body(route), _CREATE)

    def route_del(self, route: RouteState) -> None:
        self._do("route del", str(route.destination), RTM_DELROUTE, _route_body(route))

    def learning(self, index: int) -> bool | None:
        """IFLA_BRPORT_LEARNING of a bridge port (in IFLA_INFO_SLAVE_DATA), else None."""
        msgs = self._get_link("brport get", f"#{index}", _IFINFO.pack(0, 0, index, 0, 0))
        info = _attrs(_attrs(msgs[0], _IFINFO.size).get(IFLA_LINKINFO, b"")) if msgs else {}
        if _cstr(info.get(IFLA_INFO_SLAVE_KIND)) != "bridge":
            return None
        value = _attrs(info.get(IFLA_INFO_SLAVE_DATA, b"")).get(IFLA_BRPORT_LEARNING)
        return None if value is None else bool(value[0])

    def set_learning(self, index: int, on: bool) -> None:
        info = _attr(IFLA_PROTINFO | NLA_F_NESTED, _attr(IFLA_BRPORT_LEARNING, bytes((int(on),))))
        self._do("brport set learning", f"#{index}", RTM_SETLINK,
                 _IFINFO.pack(AF_BRIDGE, 0, index, 0, 0) + info)


def _netlink_socket() -> socket.socket:
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_ROUTE)
    sock.bind((0, 0))
    return sock


def _route_body(route: RouteState) -> bytes:
    dst = route.destination
    head = _RTMSG.pack(AF_INET if dst.version == 4 else AF_INET6, dst.prefixlen, 0, 0,
                       min(route.table, 255), route.protocol, route.scope, route.type, 0)
    attrs = _u32(RTA_TABLE, route.table)
    if dst.prefixlen:
        attrs += _attr(RTA_DST, dst.network_address.packed)
    ips = ((RTA_GATEWAY, route.gateway), (RTA_PREFSRC, route.prefsrc))
    attrs += b"".join(_attr(k, ip.packed) for k, ip in ips if ip is not None)
    ints = ((RTA_OIF, route.oif), (RTA_PRIORITY, route.priority))
    return head + attrs + b"".join(_u32(k, v) for k, v in ints if v is not None)


def _link_state(msg: bytes, addrs: dict[int, list[AddrState]]) -> LinkState:
    _, _, index, flags, _ = _IFINFO.unpack_from(msg)
    attrs = _attrs(msg, _IFINFO.size)
    mac = attrs.get(IFLA_ADDRESS)
    info = attrs.get(IFLA_LINKINFO)
    return LinkState(
        index=index,
        name=_cstr(attrs.get(IFLA_IFNAME)) or "",
        kind=_cstr(_attrs(info).get(IFLA_INFO_KIND)) if info else None,
        mac=MacAddress(mac) if mac and len(mac) == 6 else None,
        mtu=_int(attrs.get(IFLA_MTU)) or 0,
        up=bool(flags & IFF_UP),
        master=_int(attrs.get(IFLA_MASTER)),
        addresses=tuple(addrs.get(index, ())),
    )


def _addr_state(msg: bytes) -> AddrState:
    family, prefixlen, flags, scope, _ = _IFADDR.unpack_from(msg)
    attrs = _attrs(msg, _IFADDR.size)
    raw = attrs.get(IFA_ADDRESS)
    if family == AF_INET and attrs.get(IFA_LOCAL):
        raw = attrs[IFA_LOCAL]
    extra = _int(attrs.get(IFA_FLAGS))
    return AddrState(ipaddress.ip_interface(f"{_ip(raw)}/{prefixlen}"),
                     extra if extra is not None else flags, scope, _ip(attrs.get(IFA_BROADCAST)))


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
