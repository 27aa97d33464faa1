"""A comparable picture of a namespace's netlink state.

A snapshot holds links (name, index, kind, MAC, MTU, master, operstate,
flags), addresses, routes of every table and policy rules, each as a
frozen record sorted into a tuple, so `snapshot(a) == snapshot(b)` means
"nothing vmnet can touch through netlink differs" and `diff()` says what
does.

It leaves out what changes by itself: neighbours, counters, address
lifetimes, DAD progress flags (tentative, optimistic, dadfailed) and
cloned route-cache entries.

Interfaces are referred to by name, so a record reads like `ip` output.
"""

from __future__ import annotations

import enum
import socket
from dataclasses import dataclass
from typing import Any

from vmnet.testing.namespaces import open_ipr

_DAD_FLAGS = 0x04 | 0x08 | 0x40  # IFA_F_OPTIMISTIC | IFA_F_DADFAILED | IFA_F_TENTATIVE
_RTM_F_CLONED = 0x200
_FAMILIES = {socket.AF_INET: "inet", socket.AF_INET6: "inet6"}


class IfFlag(enum.IntFlag):
    """Interface flags, linux/if.h (`net_device_flags`)."""

    UP = 0x1
    BROADCAST = 0x2
    DEBUG = 0x4
    LOOPBACK = 0x8
    POINTOPOINT = 0x10
    NOTRAILERS = 0x20
    RUNNING = 0x40
    NOARP = 0x80
    PROMISC = 0x100
    ALLMULTI = 0x200
    MASTER = 0x400
    SLAVE = 0x800
    MULTICAST = 0x1000
    PORTSEL = 0x2000
    AUTOMEDIA = 0x4000
    DYNAMIC = 0x8000
    LOWER_UP = 0x10000
    DORMANT = 0x20000
    ECHO = 0x40000


@dataclass(frozen=True, slots=True, order=True)
class LinkRecord:
    name: str
    index: int
    kind: str
    mac: str
    mtu: int
    master: str
    operstate: str
    flags: str


@dataclass(frozen=True, slots=True, order=True)
class AddrRecord:
    ifname: str
    family: str
    address: str
    peer: str
    scope: int
    flags: int


@dataclass(frozen=True, slots=True, order=True)
class RouteRecord:
    table: int
    family: str
    type: int
    dst: str
    gateway: str
    dev: str
    scope: int
    proto: int
    prefsrc: str
    metric: int


@dataclass(frozen=True, slots=True, order=True)
class RuleRecord:
    family: str
    priority: int
    table: int
    action: int
    src: str
    dst: str
    iif: str
    oif: str
    fwmark: int


@dataclass(frozen=True, slots=True)
class NetSnapshot:
    """Links, addresses, routes and rules of one namespace."""

    links: tuple[LinkRecord, ...]
    addresses: tuple[AddrRecord, ...]
    routes: tuple[RouteRecord, ...]
    rules: tuple[RuleRecord, ...]

    def diff(self, other: NetSnapshot) -> list[str]:
        """Lines `- record` (only in self) and `+ record` (only in other)."""
        lines: list[str] = []
        for field in ("links", "addresses", "routes", "rules"):
            mine, theirs = set(getattr(self, field)), set(getattr(other, field))
            lines += [f"- {r}" for r in sorted(mine - theirs)]
            lines += [f"+ {r}" for r in sorted(theirs - mine)]
        return lines


def snapshot(netns: str | None) -> NetSnapshot:
    """Read the netlink state of `netns` (None: the caller's namespace).

    Raises:
        ConfigError: the namespace does not exist.
    """
    with open_ipr(netns) as ipr:
        links = ipr.get_links()
        addrs = ipr.get_addr()
        routes = ipr.get_routes()
        rules = [r for r in ipr.get_rules() if r["family"] in _FAMILIES]
    names = {link["index"]: link.get("ifname") for link in links}
    return NetSnapshot(
        links=tuple(sorted(_link(m, names) for m in links)),
        addresses=tuple(sorted(_addr(m, names) for m in addrs)),
        routes=tuple(sorted(_route(m, names) for m in routes if not m["flags"] & _RTM_F_CLONED)),
        rules=tuple(sorted(_rule(m) for m in rules)),
    )


def _name(names: dict[int, str], index: int | None) -> str:
    if not index:
        return ""
    return names.get(index, f"if{index}")


def _link(msg: Any, names: dict[int, str]) -> LinkRecord:
    return LinkRecord(
        name=msg.get("ifname"),
        index=msg["index"],
        kind=msg.get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND") or "",
        mac=msg.get("address") or "",
        mtu=msg.get("mtu"),
        master=_name(names, msg.get("master")),
        operstate=msg.get("operstate") or "",
        flags="|".join(f.name or "" for f in IfFlag if msg["flags"] & f),
    )


def _addr(msg: Any, names: dict[int, str]) -> AddrRecord:
    local = msg.get("local") or msg.get("address")
    peer = msg.get("address") or ""
    flags = msg.get("IFA_FLAGS")
    return AddrRecord(
        ifname=_name(names, msg["index"]),
        family=_FAMILIES.get(msg["family"], str(msg["family"])),
        address=f"{local}/{msg['prefixlen']}",
        peer="" if peer == local else peer,
        scope=msg["scope"],
        flags=(msg["flags"] if flags is None else flags) & ~_DAD_FLAGS,
    )


def _route(msg: Any, names: dict[int, str]) -> RouteRecord:
    dst = msg.get("dst")
    return RouteRecord(
        table=msg.get("table") or msg["table"],
        family=_FAMILIES.get(msg["family"], str(msg["family"])),
        type=msg["type"],
        dst=f"{dst}/{msg['dst_len']}" if dst else f"default/{msg['dst_len']}",
        gateway=msg.get("gateway") or "",
        dev=_name(names, msg.get("oif")),
        scope=msg["scope"],
        proto=msg["proto"],
        prefsrc=msg.get("prefsrc") or "",
        metric=msg.get("priority") or 0,
    )


def _rule(msg: Any) -> RuleRecord:
    src, dst = msg.get("src"), msg.get("dst")
    return RuleRecord(
        family=_FAMILIES[msg["family"]],
        priority=msg.get("priority") or 0,
        table=msg.get("table") or msg["table"],
        action=msg["action"],
        src=f"{src}/{msg['src_len']}" if src else "",
        dst=f"{dst}/{msg['dst_len']}" if dst else "",
        iif=msg.get("iifname") or "",
        oif=msg.get("oifname") or "",
        fwmark=msg.get("fwmark") or 0,
    )
