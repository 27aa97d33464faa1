"""The netlink driver: pyroute2 requests on a socket bound to one namespace.

The rtnetlink socket is opened inside the namespace at construction, on a
thread that entered it (`vmnet.core.netns.run_in`), and handed to
pyroute2 (`IPRoute(use_socket=...)`): no child process, and a missing
namespace is an error, never silently created.

Each verb is one pyroute2 request: `link` asks for one link (and its
addresses), `learning` reads one bridge port; only `links` and `routes`
dump. pyroute2 does all the netlink encoding and decoding.

`NetlinkError` and socket failures become `DriverError(op, target, errno)`.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from vmnet.core.addr import IPAddress, IPInterface, MacAddress
from vmnet.core.errors import DriverError
from vmnet.core.netns import Worker, run_in
from vmnet.plan.state import RT_TABLE_MAIN, AddrState, LinkState, RouteState

IFF_UP = 0x1
AF_INET, AF_INET6 = 2, 10
NETLINK_ROUTE = 0


@contextmanager
def _op(op: str, target: str) -> Iterator[None]:
    try:
        yield
    except NetlinkError as err:
        raise DriverError(op, target, err.code) from err
    except OSError as err:
        raise DriverError(op, target, err.errno or errno.EIO) from err


def _netlink_socket() -> socket.socket:
    return socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_ROUTE)


class Pyroute2Netlink:
    """`vmnet.apply.drivers.Netlink` over pyroute2's IPRoute."""

    def __init__(self, netns: str | None = None, worker: Worker | None = None) -> None:
        self.netns = netns
        with _op("netlink open", netns or "self"):
            sock = worker.run(_netlink_socket) if worker else run_in(netns, _netlink_socket)
            self._ipr = IPRoute(use_socket=sock)

    def close(self) -> None:
        self._ipr.close()

    def links(self, addresses: bool = True) -> list[LinkState]:
        with _op("link dump", "*"):
            msgs = self._ipr.get_links()
            addrs = self._ipr.get_addr() if addresses else ()
        by_index: dict[int, list[AddrState]] = {}
        for msg in addrs:
            by_index.setdefault(msg["index"], []).append(_addr_state(msg))
        return [_link_state(m, tuple(by_index.get(m["index"], ()))) for m in msgs]

    def _get(self, name: str | None, index: int | None) -> Any | None:
        query = {"index": index} if index is not None else {"ifname": name}
        try:
            (msg,) = self._ipr.link("get", **query)
        except NetlinkError as err:
            if err.code in (errno.ENODEV, errno.ENOENT, errno.EINVAL):
                return None
            raise DriverError(
                "link get", str(name if index is None else f"#{index}"), err.code
            ) from err
        return msg

    def link(
        self, *, name: str | None = None, index: int | None = None, addresses: bool = True
    ) -> LinkState | None:
        if name is None and index is None:
            return None
        msg = self._get(name, index)
        if msg is None:
            return None
        addrs: tuple[AddrState, ...] = ()
        if addresses:
            with _op("addr get", f"#{msg['index']}"):
                addrs = tuple(_addr_state(a) for a in self._ipr.get_addr(index=msg["index"]))
        return _link_state(msg, addrs)

    def routes(self) -> list[RouteState]:
        with _op("route dump", "main"):
            msgs = self._ipr.get_routes(table=RT_TABLE_MAIN)
        return [_route_state(m) for m in msgs if _table(m) == RT_TABLE_MAIN]

    def link_add(self, name: str, kind: str, *, mac: MacAddress | None = None) -> None:
        attrs: dict[str, Any] = {"ifname": name, "kind": kind}
        if mac is not None:
            attrs["address"] = str(mac)
        with _op(f"link add {kind}", name):
            self._ipr.link("add", **attrs)

    def link_del(self, index: int) -> None:
        with _op("link del", f"#{index}"):
            self._ipr.link("del", index=index)

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
        attrs: dict[str, Any] = {}
        if name is not None:
            attrs["ifname"] = name
        if mac is not None:
            attrs["address"] = str(mac)
        if mtu is not None:
            attrs["mtu"] = mtu
        if master is not None:
            attrs["master"] = master
        if up is not None:
            attrs["state"] = "up" if up else "down"
        with _op(f"link set {','.join(attrs)}", f"#{index}"):
            self._ipr.link("set", index=index, **attrs)

    def addr_add(
        self, index: int, interface: IPInterface, *, broadcast: IPAddress | None = None
    ) -> None:
        extra: dict[str, Any] = {}
        if broadcast is not None:
            extra["broadcast"] = str(broadcast)
        with _op("addr add", f"{interface}@#{index}"):
            self._ipr.addr(
                "add",
                index=index,
                address=str(interface.ip),
                prefixlen=interface.network.prefixlen,
                **extra,
            )

    def addr_del(self, index: int, interface: IPInterface) -> None:
        with _op("addr del", f"{interface}@#{index}"):
            self._ipr.addr(
                "del", index=index, address=str(interface.ip), prefixlen=interface.network.prefixlen
            )

    def route_add(self, route: RouteState) -> None:
        """Add `route`, also next to another route to the same destination and
        metric through another gateway (IPv4 keeps both, as `ip route append`;
        a CNI plugin can leave a pod two default routes)."""
        try:
            with _op("route add", str(route.destination)):
                self._ipr.route("add", **_route_attrs(route))
        except DriverError as err:
            if err.errno != errno.EEXIST or route.destination.version != 4:
                raise
            with _op("route append", str(route.destination)):
                self._ipr.route("append", **_route_attrs(route))

    def route_del(self, route: RouteState) -> None:
        with _op("route del", str(route.destination)):
            self._ipr.route("del", **_route_attrs(route))

    def learning(self, index: int) -> bool | None:
        """IFLA_BRPORT_LEARNING of a bridge port; None for a link in no bridge."""
        link = self.link(index=index, addresses=False)
        return None if link is None else link.learning

    def set_learning(self, index: int, on: bool) -> None:
        with _op("brport set learning", f"#{index}"):
            self._ipr.brport("set", index=index, learning=int(on))

    def set_alias(self, index: int, alias: str) -> None:
        with _op("link set alias", f"#{index}"):
            self._ipr.link("set", index=index, ifalias=alias)


def _route_attrs(route: RouteState) -> dict[str, Any]:
    attrs: dict[str, Any] = {
        "dst": str(route.destination),
        "table": route.table,
        "proto": route.protocol,
        "scope": route.scope,
        "type": route.type,
    }
    if route.gateway is not None:
        attrs["gateway"] = str(route.gateway)
    if route.oif is not None:
        attrs["oif"] = route.oif
    if route.priority is not None:
        attrs["priority"] = route.priority
    if route.prefsrc is not None:
        attrs["prefsrc"] = str(route.prefsrc)
    return attrs


def _link_state(msg: Any, addrs: tuple[AddrState, ...]) -> LinkState:
    mac = msg.get_attr("IFLA_ADDRESS")
    learning = None
    if msg.get_nested("IFLA_LINKINFO", "IFLA_INFO_SLAVE_KIND") == "bridge":
        value = msg.get_nested("IFLA_LINKINFO", "IFLA_INFO_SLAVE_DATA", "IFLA_BRPORT_LEARNING")
        learning = None if value is None else bool(value)
    return LinkState(
        index=msg["index"],
        name=msg.get_attr("IFLA_IFNAME"),
        kind=msg.get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND"),
        mac=MacAddress.parse(mac) if mac and len(mac) == 17 else None,
        mtu=msg.get_attr("IFLA_MTU") or 0,
        up=bool(msg["flags"] & IFF_UP),
        master=msg.get_attr("IFLA_MASTER"),
        addresses=addrs,
        learning=learning,
    )


def _addr_state(msg: Any) -> AddrState:
    address = msg.get_attr("IFA_ADDRESS")
    if msg["family"] == AF_INET and msg.get_attr("IFA_LOCAL"):
        address = msg.get_attr("IFA_LOCAL")
    flags = msg.get_attr("IFA_FLAGS")
    brd = msg.get_attr("IFA_BROADCAST")
    return AddrState(
        ipaddress.ip_interface(f"{address}/{msg['prefixlen']}"),
        flags if flags is not None else msg["flags"],
        msg["scope"],
        ipaddress.ip_address(brd) if brd else None,
    )


def _table(msg: Any) -> int:
    table = msg.get_attr("RTA_TABLE")
    return int(table if table is not None else msg["table"])


def _route_state(msg: Any) -> RouteState:
    family = msg["family"]
    dst = msg.get_attr("RTA_DST") or ("0.0.0.0" if family == AF_INET else "::")
    gw = msg.get_attr("RTA_GATEWAY")
    src = msg.get_attr("RTA_PREFSRC")
    return RouteState(
        destination=ipaddress.ip_network(f"{dst}/{msg['dst_len']}", strict=False),
        gateway=ipaddress.ip_address(gw) if gw else None,
        oif=msg.get_attr("RTA_OIF"),
        protocol=msg["proto"],
        scope=msg["scope"],
        type=msg["type"],
        priority=msg.get_attr("RTA_PRIORITY"),
        prefsrc=ipaddress.ip_address(src) if src else None,
        table=_table(msg),
    )
