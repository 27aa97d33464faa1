"""Frozen value types for what phase 1 reads and what it wants.

Plain, hashable data with no I/O. `LinkState`, `AddrState` and `RouteState`
describe the kernel as read; `LinkSpec` and `NetPlan` describe it as wanted:
a binding turns the first into the second, the applier makes it so.
`NetworkRecord` is what phase 1 caches per network, pod NIC included, before
its first mutation, so an interrupted phase 1 and unplug work from that
record, not from the kernel.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from ipaddress import IPv6Address

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


@dataclass(frozen=True, slots=True)
class Router6:
    """The pod's IPv6 router as its own link sees it: the link-local address
    it answers on (a router advertisement's source must be link-local,
    RFC 4861 §6.1.2) and its MAC, when it answered."""

    address: IPv6Address
    mac: MacAddress | None = None


@dataclass(frozen=True, slots=True)
class PodNic:
    """The pod NIC the CNI plugin made, as found before vmnet touched it.

    `router6` is the router behind the pod's IPv6 default route, found by
    asking the link (`vmnet.apply.drivers.router6`); None when the pod has
    no IPv6 default route or the router did not answer."""

    link: LinkState
    routes: tuple[RouteState, ...] = ()
    router6: Router6 | None = None

    @property
    def gateway6(self) -> IPv6Address | None:
        """The gateway of the pod's first IPv6 default route."""
        for route in self.routes:
            if route.destination.version == 6 and route.is_default and route.gateway:
                assert isinstance(route.gateway, IPv6Address)
                return route.gateway
        return None

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
    vmi_uid: str = ""
