"""Frozen value types for what phase 1 reads and what it wants.

Rules:
1. Everything here is plain data: no I/O, no netlink objects, hashable.
2. `LinkState`, `AddrState` and `RouteState` describe the kernel as read;
   `LinkSpec` and `NetPlan` describe the kernel as wanted. A binding turns the
   first into the second (`plan`), a generic executor makes it so (`apply`).
3. Every type round-trips through plain JSON (`to_json`/`from_json`) because
   the discovered pod NIC is cached before the first mutation: a phase 1 that
   was interrupted, and unplug, work from that record, not from the kernel.
"""

from __future__ import annotations

import enum
import ipaddress
from dataclasses import dataclass, field
from typing import Any

from vmnet.core.addr import IPAddress, IPInterface, IPNetwork, MacAddress, is_global_unicast
from vmnet.plan.nat import NatTable

RT_TABLE_MAIN = 254
RTPROT_KERNEL = 2  # rtnetlink.h: route installed by the kernel (connected, prefix)
RTN_UNICAST = 1


@dataclass(frozen=True, slots=True)
class AddrState:
    """One address on a link (IFA_ADDRESS/prefixlen, IFA_F_* flags, scope)."""

    interface: IPInterface
    flags: int = 0
    scope: int = 0
    broadcast: IPAddress | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "address": str(self.interface),
            "flags": self.flags,
            "scope": self.scope,
            "broadcast": str(self.broadcast) if self.broadcast else None,
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> AddrState:
        brd = obj.get("broadcast")
        return cls(
            ipaddress.ip_interface(obj["address"]),
            int(obj["flags"]),
            int(obj["scope"]),
            ipaddress.ip_address(brd) if brd else None,
        )


@dataclass(frozen=True, slots=True)
class RouteState:
    """One route of the main table, with what is needed to re-create it."""

    destination: IPNetwork
    gateway: IPAddress | None = None
    oif: int | None = None
    protocol: int = 0
    scope: int = 0
    type: int = RTN_UNICAST
    priority: int | None = None
    prefsrc: IPAddress | None = None
    table: int = RT_TABLE_MAIN

    @property
    def is_default(self) -> bool:
        return self.destination.prefixlen == 0

    @property
    def key(self) -> tuple[object, ...]:
        """What makes two routes the same route for the kernel."""
        return (self.destination, self.gateway, self.table, self.priority or 0, self.type)

    def to_json(self) -> dict[str, Any]:
        return {
            "destination": str(self.destination),
            "gateway": str(self.gateway) if self.gateway else None,
            "oif": self.oif,
            "protocol": self.protocol,
            "scope": self.scope,
            "type": self.type,
            "priority": self.priority,
            "prefsrc": str(self.prefsrc) if self.prefsrc else None,
            "table": self.table,
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> RouteState:
        gw, src = obj.get("gateway"), obj.get("prefsrc")
        return cls(
            destination=ipaddress.ip_network(obj["destination"]),
            gateway=ipaddress.ip_address(gw) if gw else None,
            oif=obj.get("oif"),
            protocol=int(obj.get("protocol", 0)),
            scope=int(obj.get("scope", 0)),
            type=int(obj.get("type", RTN_UNICAST)),
            priority=obj.get("priority"),
            prefsrc=ipaddress.ip_address(src) if src else None,
            table=int(obj.get("table", RT_TABLE_MAIN)),
        )


@dataclass(frozen=True, slots=True)
class LinkState:
    """A link as the kernel reports it."""

    index: int
    name: str
    kind: str | None
    mac: MacAddress | None
    mtu: int
    up: bool
    master: int | None = None
    addresses: tuple[AddrState, ...] = ()
    learning: bool | None = field(default=None, compare=False)  # bridge ports only

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "name": self.name,
            "kind": self.kind,
            "mac": str(self.mac) if self.mac else None,
            "mtu": self.mtu,
            "up": self.up,
            "master": self.master,
            "addresses": [a.to_json() for a in self.addresses],
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> LinkState:
        mac = obj.get("mac")
        return cls(
            index=int(obj["index"]),
            name=str(obj["name"]),
            kind=obj.get("kind"),
            mac=MacAddress.parse(mac) if mac else None,
            mtu=int(obj["mtu"]),
            up=bool(obj["up"]),
            master=obj.get("master"),
            addresses=tuple(AddrState.from_json(a) for a in obj.get("addresses", [])),
        )


@dataclass(frozen=True, slots=True)
class PodNic:
    """The pod NIC the CNI plugin made, as found before vmnet touched it."""

    link: LinkState
    routes: tuple[RouteState, ...] = ()

    @property
    def name(self) -> str:
        return self.link.name

    @property
    def ipv4(self) -> IPInterface | None:
        """The first global unicast IPv4 address (KubeVirt's "has IP")."""
        return self._first_global(4)

    @property
    def ipv6(self) -> IPInterface | None:
        return self._first_global(6)

    def _first_global(self, version: int) -> IPInterface | None:
        for addr in self.link.addresses:
            ip = addr.interface.ip
            if ip.version == version and is_global_unicast(ip):
                return addr.interface
        return None

    def to_json(self) -> dict[str, Any]:
        return {"link": self.link.to_json(), "routes": [r.to_json() for r in self.routes]}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> PodNic:
        return cls(
            LinkState.from_json(obj["link"]),
            tuple(RouteState.from_json(r) for r in obj.get("routes", [])),
        )


@dataclass(frozen=True, slots=True)
class TapSpec:
    """How to create a tap: owner and queue count (docs/kubevirt.md, Taps)."""

    uid: int = 0
    gid: int = 0
    queues: int = 1


@dataclass(frozen=True, slots=True)
class LinkSpec:
    """A link as phase 1 wants it. `None` fields are left as they are.

    `index` pins an existing link (the pod NIC, renamed in the same run);
    otherwise the link is found by `name` and created with `kind` if absent.
    `addresses=()` flushes every address but the kernel's own IPv6 link-local
    ones; `None` leaves them alone. `absent` deletes the link if it exists.
    `optional` links are skipped with a warning when the kernel lacks their
    driver (the dummy that keeps the pod IP visible). `routes`, when set, is
    the exact set of main-table routes through the link once it is up: what
    the kernel added by itself and is not listed is deleted, except the
    fe80::/64 route that belongs to the link's own IPv6 link-local address.
    """

    name: str
    kind: str | None = None
    index: int | None = None
    mac: MacAddress | None = None
    mtu: int | None = None
    master: str | None = None
    addresses: tuple[IPInterface | AddrState, ...] | None = None
    up: bool | None = None
    learning: bool | None = None
    tap: TapSpec | None = None
    absent: bool = False
    optional: bool = False
    routes: tuple[RouteState, ...] | None = None


@dataclass(frozen=True, slots=True)
class NetPlan:
    """Everything phase 1 does for one network, in order."""

    links: tuple[LinkSpec, ...] = ()
    routes: tuple[RouteState, ...] = ()
    sysctls: tuple[tuple[str, str], ...] = ()
    nft: tuple[NatTable, ...] = ()
    nft_delete: tuple[tuple[str, str], ...] = ()
    notes: tuple[str, ...] = field(default=(), compare=False)


class NetworkState(enum.IntEnum):
    """Per-network phase-1 state (KubeVirt `networkState`)."""

    PENDING = 0
    STARTED = 1
    FINISHED = 2


@dataclass(frozen=True, slots=True)
class NetworkRecord:
    """What phase 1 knows about one network of the VM."""

    network: str
    binding: str
    state: NetworkState
    pod_iface: str
    index: int
    primary: bool
    pod_nic: PodNic
    nic_mac: MacAddress
    tap: TapSpec
    vm_mac: MacAddress
    vmi: str = ""
    warnings: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "network": self.network,
            "binding": self.binding,
            "state": self.state.name.lower(),
            "podIface": self.pod_iface,
            "index": self.index,
            "primary": self.primary,
            "podNic": self.pod_nic.to_json(),
            "nicMac": str(self.nic_mac),
            "vmMac": str(self.vm_mac),
            "vmi": self.vmi,
            "tap": {"uid": self.tap.uid, "gid": self.tap.gid, "queues": self.tap.queues},
            "warnings": list(self.warnings),
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> NetworkRecord:
        tap = obj["tap"]
        return cls(
            network=str(obj["network"]),
            binding=str(obj["binding"]),
            state=NetworkState[str(obj["state"]).upper()],
            pod_iface=str(obj["podIface"]),
            index=int(obj["index"]),
            primary=bool(obj["primary"]),
            pod_nic=PodNic.from_json(obj["podNic"]),
            nic_mac=MacAddress.parse(obj["nicMac"]),
            tap=TapSpec(int(tap["uid"]), int(tap["gid"]), int(tap["queues"])),
            vm_mac=MacAddress.parse(obj["vmMac"]),
            vmi=str(obj.get("vmi", "")),
            warnings=tuple(str(w) for w in obj.get("warnings", [])),
        )
