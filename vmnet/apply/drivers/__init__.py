"""Drivers: one per kind of side effect, each a small Protocol.

- Only the drivers (and vmnet.testing) speak netlink: an import contract
  in pyproject.toml holds it.
- A real method adds error context and nothing else: failures become
  `DriverError(op, target, errno)`.
- Every driver is bound to one network namespace at construction; nothing
  moves the calling thread (see `vmnet.core.netns`).
- `vmnet.apply.drivers.fake` holds stateful fakes with the same contract,
  for unit tests of plans and of the applier.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import IPv6Address
from typing import Protocol

from vmnet.core.addr import IPAddress, IPInterface, MacAddress
from vmnet.core.netns import Worker
from vmnet.plan.nat import NatTable
from vmnet.plan.state import LinkState, Router6, RouteState, TapSpec


class Netlink(Protocol):
    def links(self, addresses: bool = True) -> list[LinkState]: ...
    def link(
        self, *, name: str | None = None, index: int | None = None, addresses: bool = True
    ) -> LinkState | None:
        """One link; `addresses=False` skips reading its addresses (they stay empty)."""

    def routes(self) -> list[RouteState]: ...
    def link_add(self, name: str, kind: str, *, mac: MacAddress | None = None) -> None: ...
    def link_del(self, index: int) -> None: ...
    def link_set(
        self,
        index: int,
        *,
        name: str | None = None,
        mac: MacAddress | None = None,
        mtu: int | None = None,
        master: int | None = None,
        up: bool | None = None,
    ) -> None: ...
    def addr_add(
        self, index: int, interface: IPInterface, *, broadcast: IPAddress | None = None
    ) -> None: ...
    def addr_del(self, index: int, interface: IPInterface) -> None: ...
    def route_add(self, route: RouteState) -> None: ...
    def route_del(self, route: RouteState) -> None: ...
    def learning(self, index: int) -> bool | None: ...
    def set_learning(self, index: int, on: bool) -> None: ...

    def set_alias(self, index: int, alias: str) -> None:
        """IFLA_IFALIAS: a note on the link anyone in the namespace can read (sysfs ifalias)."""

    def close(self) -> None: ...


class Sysctl(Protocol):
    def get(self, key: str) -> str | None: ...
    def set(self, key: str, value: str) -> None: ...


class Tap(Protocol):
    def create(self, name: str, spec: TapSpec) -> None: ...


class Nft(Protocol):
    def apply(self, nat: tuple[NatTable, ...]) -> None: ...
    def delete_table(self, family: str, table: str) -> None: ...
    def has_table(self, family: str, table: str) -> bool: ...
    def table_comment(self, family: str, table: str) -> str | None: ...


class Router6Finder(Protocol):
    def find(self, index: int, gateway: IPv6Address) -> Router6 | None:
        """The link-local address and MAC of IPv6 router `gateway` on link
        `index`, found by asking the link; None when it does not answer."""


class FrameSender(Protocol):
    def send(self, ifname: str, frames: Sequence[bytes]) -> None:
        """Send whole Ethernet frames out of link `ifname` (DriverError on failure)."""


@dataclass
class Drivers:
    """The bundle of drivers a binding's plan is applied with."""

    netlink: Netlink
    sysctl: Sysctl
    tap: Tap
    nft: Nft
    worker: Worker | None = None
    router6: Router6Finder | None = None  # None: IPv6 routers are not looked for
    frames: FrameSender | None = None  # None: phase 1 announces nothing

    def close(self) -> None:
        self.netlink.close()
        if self.worker is not None:
            self.worker.close()


def real(netns: str | None) -> Drivers:
    """Drivers acting on `netns` (a name, a path, or None for our own)."""
    from vmnet.apply.drivers.frames import PacketFrames
    from vmnet.apply.drivers.nft import NftCli
    from vmnet.apply.drivers.router6 import Router6Probe
    from vmnet.apply.drivers.rtnl import RtnlNetlink
    from vmnet.apply.drivers.sysctl import ProcSys
    from vmnet.apply.drivers.tap import TunTap

    worker = Worker(netns)
    try:
        netlink = RtnlNetlink(netns, worker)
    except BaseException:
        worker.close()
        raise
    return Drivers(
        netlink,
        ProcSys(netns, worker=worker),
        TunTap(netns, worker=worker),
        NftCli(netns),
        worker,
        Router6Probe(netlink, netns, worker),
        PacketFrames(netns, worker),
    )
