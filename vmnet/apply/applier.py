"""The generic NetPlan executor.

Every step is an ensure: read, compare, change only what differs. Running a
plan twice changes nothing the second time; running it after a crash at
any point converges to the same end state.

Order: links in plan order (each: locate by index or name, create, type
check, down if renaming or re-addressing the MAC, rename, MAC, MTU, master,
addresses, up, learning), then routes, then sysctls, then nftables.

An `absent` link is deleted only if it is of the planned kind: a name the
pod NIC has taken back is never mistaken for vmnet's dummy.

Every mutation goes through `Applier.mutate`, which counts it and calls
the `on_mutation` hook (the crash-injection point, see `vmnet.core.faults`).

IPv6 link-local addresses belong to the kernel: a flush leaves them, and
they are never added back by hand.

Links are found by ifindex, or by name through one dump of the names kept
current by this applier: a link it has not made yet costs no request.
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from vmnet.apply.drivers import Drivers
from vmnet.core.addr import IPInterface
from vmnet.core.errors import DriverError, PrivilegeError
from vmnet.plan.nat import NatTable
from vmnet.plan.state import RT_TABLE_MAIN, AddrState, LinkSpec, LinkState, NetPlan, RouteState

log = logging.getLogger(__name__)

_KIND_ALIASES = {"tap": "tun"}
_UNSUPPORTED = (errno.EOPNOTSUPP, errno.ENOTSUP, errno.EINVAL, errno.ENOENT)


def _as_state(addr: IPInterface | AddrState) -> AddrState:
    return addr if isinstance(addr, AddrState) else AddrState(addr)


def _managed(addr: IPInterface) -> bool:
    return not (addr.version == 6 and addr.ip.is_link_local)


class Applier:
    """Applies plans with one set of drivers, counting mutations."""

    def __init__(self, drivers: Drivers, on_mutation: Callable[[str], None] | None = None) -> None:
        self.drivers = drivers
        self.nl = drivers.netlink
        self.on_mutation = on_mutation
        self.mutations: list[str] = []
        self.warnings: list[str] = []
        self._known: dict[str, int] | None = None

    def mutate(self, what: str, fn: Callable[..., Any], *args: Any, **kw: Any) -> None:
        try:
            fn(*args, **kw)
        except DriverError as err:
            if err.errno in (errno.EPERM, errno.EACCES) and not self.mutations:
                # refused before anything changed: a missing privilege, not a broken pod
                raise PrivilegeError("CAP_NET_ADMIN", str(err)) from err
            raise
        self.mutations.append(what)
        log.info("changed: %s", what)
        if self.on_mutation is not None:
            self.on_mutation(what)

    def apply(self, plan: NetPlan) -> None:
        for spec in plan.links:
            self.ensure_link(spec)
        for route in plan.routes:
            self.ensure_route(route)
        for key, value in plan.sysctls:
            if self.drivers.sysctl.get(key) != value:
                self.mutate(f"sysctl {key}={value}", self.drivers.sysctl.set, key, value)
        if plan.nft and not self._nft_current(plan.nft):
            self.mutate("nft apply", self.drivers.nft.apply, plan.nft)
        for family, table in plan.nft_delete:
            if self.drivers.nft.has_table(family, table):
                self.mutate(
                    f"nft delete table {family} {table}",
                    self.drivers.nft.delete_table,
                    family,
                    table,
                )

    def _nft_current(self, nat: tuple[NatTable, ...]) -> bool:
        return all(self.drivers.nft.table_comment(t.family, t.name) == t.comment for t in nat)

    def _names(self) -> dict[str, int]:
        """Name -> ifindex of the namespace's links: one dump, then kept up to
        date by this applier's own creations, renames and deletions, so a link
        that does not exist yet costs no request."""
        if self._known is None:
            self._known = {link.name: link.index for link in self.nl.links(addresses=False)}
        return self._known

    def _locate(self, spec: LinkSpec) -> LinkState | None:
        addresses = spec.addresses is not None
        index = spec.index if spec.index is not None else self._names().get(spec.name)
        return None if index is None else self.nl.link(index=index, addresses=addresses)

    def ensure_link(self, spec: LinkSpec) -> None:
        cur = self._locate(spec)
        if spec.absent:
            if cur is not None and self._is_kind(spec, cur):
                self.mutate(f"link del {cur.name}", self.nl.link_del, cur.index)
                self._names().pop(cur.name, None)
            return
        if cur is None:
            cur = self._create(spec)
            if cur is None:
                return
        self._check_kind(spec, cur)
        self._converge(spec, cur)

    def _create(self, spec: LinkSpec) -> LinkState | None:
        if spec.index is not None:
            raise DriverError("link lookup", f"{spec.name} (#{spec.index})", errno.ENODEV)
        if spec.kind is None:
            raise DriverError("link lookup", spec.name, errno.ENODEV)
        try:
            if spec.kind == "tap":
                assert spec.tap is not None
                self.mutate(f"tap add {spec.name}", self.drivers.tap.create, spec.name, spec.tap)
            else:
                self.mutate(
                    f"link add {spec.kind} {spec.name}",
                    self.nl.link_add,
                    spec.name,
                    spec.kind,
                    mac=spec.mac,
                )
        except DriverError as err:
            if spec.optional and err.errno in _UNSUPPORTED:
                msg = f"kernel has no {spec.kind} driver: {spec.name} not created ({err})"
                log.warning(msg)
                self.warnings.append(msg)
                return None
            raise
        # a link just made has no address but the kernel's IPv6 link-local
        cur = self.nl.link(name=spec.name, addresses=False)
        if cur is None:
            raise DriverError("link lookup after create", spec.name, errno.ENODEV)
        return cur

    @staticmethod
    def _is_kind(spec: LinkSpec, cur: LinkState) -> bool:
        return spec.kind is None or cur.kind == _KIND_ALIASES.get(spec.kind, spec.kind)

    def _check_kind(self, spec: LinkSpec, cur: LinkState) -> None:
        if not self._is_kind(spec, cur):
            raise DriverError("type collision", spec.name, f"exists as {cur.kind}, not {spec.kind}")

    def _converge(self, spec: LinkSpec, cur: LinkState) -> None:
        rename = cur.name != spec.name
        remac = spec.mac is not None and cur.mac != spec.mac
        down = cur.up and (rename or remac)
        if down:
            self.mutate(f"link down {cur.name}", self.nl.link_set, cur.index, up=False)
        attrs: dict[str, Any] = {}
        if rename:
            attrs["name"] = spec.name
        if remac:
            attrs["mac"] = spec.mac
        if spec.mtu is not None and cur.mtu != spec.mtu:
            attrs["mtu"] = spec.mtu
        master = self._index_of(spec.master, spec.name) if spec.master is not None else None
        if master is not None and cur.master != master:
            attrs["master"] = master
        want_up = spec.up if spec.up is not None else (cur.up if down else None)
        if want_up is not None and (down or cur.up != want_up):
            attrs["up"] = want_up
        if attrs:  # one request: the kernel renames, re-MACs, enslaves, then flips IFF_UP
            self.mutate(
                f"link set {spec.name} {','.join(attrs)}", self.nl.link_set, cur.index, **attrs
            )
        names = self._names()
        if names.get(cur.name) == cur.index:
            del names[cur.name]
        names[spec.name] = cur.index
        if spec.addresses is not None:
            if down:  # the kernel drops a link's IPv6 addresses when it goes down
                cur = self.nl.link(index=cur.index, addresses=True) or cur
            self._ensure_addresses(spec, cur)
        if spec.routes is not None:
            self._ensure_routes(spec, cur.index)
        if spec.learning is not None:
            learning = True if "master" in attrs else cur.learning  # a new port learns
            if learning != spec.learning:
                self.mutate(f"learning {spec.name}", self.nl.set_learning, cur.index, spec.learning)

    def _index_of(self, name: str, of: str) -> int:
        """The ifindex of `name`, from the name map."""
        index = self._names().get(name)
        if index is None:
            raise DriverError("link master", f"{of}->{name}", errno.ENODEV)
        return index

    def _ensure_addresses(self, spec: LinkSpec, cur: LinkState) -> None:
        assert spec.addresses is not None
        want = [_as_state(a) for a in spec.addresses]
        want = [a for a in want if _managed(a.interface)]
        have = [a.interface for a in cur.addresses if _managed(a.interface)]
        for addr in have:
            if addr not in [w.interface for w in want]:
                self.mutate(f"addr del {addr} {spec.name}", self.nl.addr_del, cur.index, addr)
        for state in want:
            if state.interface not in have:
                self._add_addr(spec.name, cur.index, state)

    def _add_addr(self, name: str, index: int, state: AddrState) -> None:
        addr = state.interface
        try:
            self.mutate(
                f"addr add {addr} {name}", self.nl.addr_add, index, addr, broadcast=state.broadcast
            )
        except DriverError as err:
            if err.errno != errno.EEXIST:
                raise

    def _ensure_routes(self, spec: LinkSpec, index: int) -> None:
        assert spec.routes is not None
        want = {r.key for r in spec.routes}
        for have in self.nl.routes():
            if (
                have.oif == index
                and have.key not in want
                and have.table == RT_TABLE_MAIN
                and not (have.destination.version == 6 and have.destination.is_link_local)
            ):
                self.mutate(f"route del {have.destination} {spec.name}", self.nl.route_del, have)
        # on-link routes first: a route via a gateway needs the gateway reachable
        for route in sorted(spec.routes, key=lambda r: r.gateway is not None):
            self.ensure_route(replace(route, oif=index))

    def ensure_route(self, route: RouteState) -> None:
        for have in self.nl.routes():
            if have.key == route.key and have.oif == route.oif:
                return
        try:
            self.mutate(f"route add {route.destination}", self.nl.route_add, route)
        except DriverError as err:
            if err.errno != errno.EEXIST:
                raise


def apply(
    plan: NetPlan, drivers: Drivers, on_mutation: Callable[[str], None] | None = None
) -> Applier:
    """Apply `plan` with `drivers`; return the applier (its mutation journal)."""
    applier = Applier(drivers, on_mutation)
    applier.apply(plan)
    return applier
