"""Stateful fakes of the drivers, for fast unit tests of plans and `apply`.

The fakes model the kernel, they do not mock calls: indexes are assigned,
addresses are kept per link, a route through a link goes away with its
addresses, and a missing link raises the same `DriverError(ENODEV)` as the
real driver.

`.journal` lists every mutating call in order; `fail_on={"link_set": EPERM}`
makes a verb fail, to test error paths.

`kinds` lists the link kinds the fake "kernel" has (no dummy by default, as
on the CI machine).
"""

from __future__ import annotations

import errno
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from vmnet.apply.drivers import Drivers
from vmnet.core.addr import IPAddress, IPInterface, MacAddress
from vmnet.core.errors import DriverError
from vmnet.plan.nat import NatTable, script
from vmnet.plan.state import RTPROT_KERNEL, AddrState, LinkState, RouteState, TapSpec


@dataclass
class FakeNetlink:
    kinds: frozenset[str] = frozenset({"bridge", "veth", "tun"})
    fail_on: dict[str, int] = field(default_factory=dict)
    journal: list[str] = field(default_factory=list)
    _links: dict[int, LinkState] = field(default_factory=dict)
    _routes: list[RouteState] = field(default_factory=list)
    _learning: dict[int, bool] = field(default_factory=dict)
    aliases: dict[int, str] = field(default_factory=dict)
    _next: int = 1

    def _mut(self, verb: str, what: str) -> None:
        if verb in self.fail_on:
            raise DriverError(verb, what, self.fail_on[verb])
        self.journal.append(f"{verb} {what}")

    def _get(self, index: int) -> LinkState:
        if index not in self._links:
            raise DriverError("link lookup", f"#{index}", errno.ENODEV)
        return self._links[index]

    def add_existing(self, link: LinkState, routes: tuple[RouteState, ...] = ()) -> LinkState:
        """Seed a link (the pod NIC a CNI plugin made) without journaling."""
        link = replace(link, index=self._next)
        self._next += 1
        self._links[link.index] = link
        self._routes.extend(replace(r, oif=link.index) for r in routes)
        return link

    def seed(self, link: LinkState, routes: tuple[RouteState, ...] = ()) -> None:
        """Copy a link of a real namespace as it is, its index included."""
        self._links[link.index] = link
        self._next = max(self._next, link.index + 1)
        self._routes.extend(routes)
        if link.learning is not None:
            self._learning[link.index] = link.learning

    def links(self, addresses: bool = True) -> list[LinkState]:
        found = sorted(self._links.values(), key=lambda link: link.index)
        return found if addresses else [replace(x, addresses=()) for x in found]

    def link(
        self, *, name: str | None = None, index: int | None = None, addresses: bool = True
    ) -> LinkState | None:
        if index is not None:
            found = self._links.get(index)
        else:
            found = next((x for x in self._links.values() if x.name == name), None)
        if found is not None and not addresses:
            found = replace(found, addresses=())
        if found is not None and found.master:
            found = replace(found, learning=self._learning.get(found.index, True))
        return found

    def routes(self) -> list[RouteState]:
        return list(self._routes)

    def link_add(self, name: str, kind: str, *, mac: MacAddress | None = None) -> None:
        if kind not in self.kinds:
            raise DriverError(f"link add {kind}", name, errno.EOPNOTSUPP)
        self._add(name, kind, mac)

    def _add(self, name: str, kind: str, mac: MacAddress | None) -> None:
        if self.link(name=name) is not None:
            raise DriverError(f"link add {kind}", name, errno.EEXIST)
        self._mut("link_add", f"{kind} {name}")
        index = self._next
        self._next += 1
        self._links[index] = LinkState(
            index, name, kind, mac or MacAddress.random_local(), 1500, False
        )

    def link_del(self, index: int) -> None:
        link = self._get(index)
        self._mut("link_del", link.name)
        del self._links[index]
        self._routes = [r for r in self._routes if r.oif != index]
        for other in list(self._links.values()):
            if other.master == index:
                self._links[other.index] = replace(other, master=None)

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
        link = self._get(index)
        self._mut(
            "link_set", f"{link.name} name={name} mac={mac} mtu={mtu} master={master} up={up}"
        )
        if name is not None and self.link(name=name) not in (None, link):
            raise DriverError("link set name", name, errno.EEXIST)
        if link.up and up is False:
            self._down(index)
            link = self._get(index)
        self._links[index] = replace(
            link,
            name=name or link.name,
            mac=mac or link.mac,
            mtu=mtu or link.mtu,
            master=link.master if master is None else (master or None),
            up=link.up if up is None else up,
        )
        if up and not link.up:
            self._up(index)
        if master:
            self._learning.pop(index, None)  # a new bridge port starts with learning on

    def _down(self, index: int) -> None:
        """What the kernel does to a link going down: it forgets the link's
        IPv6 addresses (keep_addr_on_down=0) and every route through it."""
        link = self._get(index)
        kept = tuple(a for a in link.addresses if a.interface.version == 4)
        self._links[index] = replace(link, addresses=kept)
        self._routes = [r for r in self._routes if r.oif != index]

    def _up(self, index: int) -> None:
        """What the kernel does to a link coming up: it adds the fe80::/64
        route for the link-local address it generates."""
        fe80 = ipaddress.IPv6Network("fe80::/64")
        if not any(r.oif == index and r.destination == fe80 for r in self._routes):
            self._routes.append(
                RouteState(fe80, None, oif=index, protocol=RTPROT_KERNEL, priority=256)
            )

    def addr_add(
        self, index: int, interface: IPInterface, *, broadcast: IPAddress | None = None
    ) -> None:
        link = self._get(index)
        if any(a.interface == interface for a in link.addresses):
            raise DriverError("addr add", str(interface), errno.EEXIST)
        self._mut("addr_add", f"{interface} {link.name}")
        state = AddrState(interface, broadcast=broadcast)
        self._links[index] = replace(link, addresses=(*link.addresses, state))
        if interface.network.prefixlen < interface.max_prefixlen:
            v6 = interface.version == 6  # the kernel's v6 prefix route: metric 256, global scope
            self._routes.append(
                RouteState(
                    interface.network,
                    None,
                    oif=index,
                    protocol=RTPROT_KERNEL,
                    scope=0 if v6 else 253,
                    priority=256 if v6 else None,
                )
            )

    def addr_del(self, index: int, interface: IPInterface) -> None:
        link = self._get(index)
        if all(a.interface != interface for a in link.addresses):
            raise DriverError("addr del", str(interface), errno.EADDRNOTAVAIL)
        self._mut("addr_del", f"{interface} {link.name}")
        left = tuple(a for a in link.addresses if a.interface != interface)
        self._links[index] = replace(link, addresses=left)
        self._routes = [
            r
            for r in self._routes
            if not (r.oif == index and r.destination.version == interface.version)
        ]

    def route_add(self, route: RouteState) -> None:
        self._mut("route_add", str(route.destination))
        self._routes.append(route)

    def route_del(self, route: RouteState) -> None:
        self._mut("route_del", str(route.destination))
        self._routes = [r for r in self._routes if not (r.key == route.key and r.oif == route.oif)]

    def learning(self, index: int) -> bool | None:
        link = self._get(index)
        return self._learning.get(index, True) if link.master else None

    def set_learning(self, index: int, on: bool) -> None:
        self._mut("set_learning", f"{self._get(index).name} {on}")
        self._learning[index] = on

    def set_alias(self, index: int, alias: str) -> None:
        self._mut("set_alias", f"{self._get(index).name} {alias}")
        self.aliases[index] = alias

    def close(self) -> None:
        pass


KERNEL_DEFAULTS = {
    "net/ipv4/conf/all/arp_ignore": "0",
    "net/ipv4/ip_forward": "0",
    "net/ipv6/conf/all/forwarding": "0",
    "net/ipv4/ping_group_range": "1 0",
    "net/ipv4/ip_unprivileged_port_start": "1024",
}


@dataclass
class FakeSysctl:
    """Global keys as a dict; per-link keys (`net/ipv4/conf/<link>/...`) exist
    only while the link does, as in /proc/sys."""

    netlink: FakeNetlink | None = None
    values: dict[str, str] = field(default_factory=lambda: dict(KERNEL_DEFAULTS))
    journal: list[str] = field(default_factory=list)
    read_through: Callable[[str], str | None] | None = None  # a real namespace's values

    def _gone(self, key: str) -> bool:
        parts = key.split("/")
        if len(parts) > 3 and parts[2] == "conf" and parts[3] not in ("all", "default"):
            return self.netlink is not None and self.netlink.link(name=parts[3]) is None
        return False

    def get(self, key: str) -> str | None:
        if self._gone(key):
            return None
        if key not in self.values and self.read_through is not None:
            value = self.read_through(key)
            if value is None:
                return None
            self.values[key] = value
        return self.values.get(key)

    def set(self, key: str, value: str) -> None:
        if self._gone(key):
            raise DriverError("sysctl write", key, errno.ENOENT)
        self.journal.append(f"sysctl {key}={value}")
        self.values[key] = value


@dataclass
class FakeTap:
    netlink: FakeNetlink
    created: list[tuple[str, TapSpec]] = field(default_factory=list)

    def create(self, name: str, spec: TapSpec) -> None:
        self.netlink._add(name, "tun", None)
        self.created.append((name, spec))


@dataclass
class FakeNft:
    """Tables by (family, name); `applied` keeps each transaction's text."""

    tables: dict[tuple[str, str], NatTable] = field(default_factory=dict)
    applied: list[str] = field(default_factory=list)
    read_through: Any = None  # a real Nft: tables neither made nor deleted here are its
    _deleted: set[tuple[str, str]] = field(default_factory=set)

    def apply(self, nat: tuple[NatTable, ...]) -> None:
        self.applied.append(script(nat))
        for table in nat:
            self.tables[(table.family, table.name)] = table

    def _real(self, family: str, table: str) -> bool:
        key = (family, table)
        return key not in self.tables and key not in self._deleted and self.read_through is not None

    def has_table(self, family: str, table: str) -> bool:
        if self._real(family, table):
            return bool(self.read_through.has_table(family, table))
        return (family, table) in self.tables

    def table_comment(self, family: str, table: str) -> str | None:
        if self._real(family, table):
            comment: str | None = self.read_through.table_comment(family, table)
            return comment
        found = self.tables.get((family, table))
        return None if found is None else found.comment

    def delete_table(self, family: str, table: str) -> None:
        self.tables.pop((family, table), None)
        self._deleted.add((family, table))


def shadow(real: Drivers, kinds: frozenset[str]) -> Drivers:
    """Fakes that start as a copy of the real namespace of `real` (links with
    their addresses, indexes and bridge-port learning, routes, and sysctls and
    nftables tables read through on first use): the changes applied to them
    are the changes a real run would make, and nothing real changes."""
    nl = FakeNetlink(kinds=kinds)
    routes = real.netlink.routes()
    for link in real.netlink.links():
        learning = real.netlink.learning(link.index) if link.master else None
        mine = tuple(r for r in routes if r.oif == link.index)
        nl.seed(replace(link, learning=learning), mine)
    nl._routes.extend(r for r in routes if r.oif is None)
    sysctl = FakeSysctl(nl, values={}, read_through=real.sysctl.get)
    return Drivers(
        netlink=nl,
        sysctl=sysctl,
        tap=FakeTap(nl),
        nft=FakeNft(read_through=real.nft),
        router6=real.router6,  # it only asks the link; a preview plans what a plug would
    )


def fake_drivers(**netlink_kw: object) -> Drivers:
    nl = FakeNetlink(**netlink_kw)  # type: ignore[arg-type]
    return Drivers(netlink=nl, sysctl=FakeSysctl(nl), tap=FakeTap(nl), nft=FakeNft())
