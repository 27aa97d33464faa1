"""Bridge binding: the pod's IP and MAC move to the VM (docs/kubevirt.md, Bridge binding).

Links, in apply order: bridge `k6t-S` (up, 169.254.75.1k/32 when the pod
has a global IPv4, a MAC fixed per VM and network); the pod NIC by ifindex
(renamed `S-nic`, a fresh random MAC so the VM can own the original one,
enslaved, addresses flushed, up, learning off); the tap (pod MTU, owner,
enslaved, up); a dummy named like the pod NIC that keeps the pod's MAC,
MTU and addresses visible in the pod, down (optional: skipped with a
warning when the kernel has no dummy driver).

`net.ipv4.conf.all.arp_ignore=1` when the pod has an IPv4, so the dummy
never answers ARP for the VM's address.

Unplug deletes the tap, bridge and dummy, then gives the pod NIC back its
name, MAC, MTU, addresses and routes.
"""

from __future__ import annotations

import ipaddress

from vmnet.core.addr import is_global_unicast
from vmnet.core.errors import DiscoveryError
from vmnet.plan.bindings import BindContext, BindMechanism
from vmnet.plan.state import RTPROT_KERNEL, LinkSpec, NetPlan, PodNic
from vmnet.protocols.dhcp4.config import DhcpConfig, Route
from vmnet.protocols.dhcp6.config import DEFAULT_ROUTER_LIFETIME, MIN_MTU, Dhcp6Config

ARP_IGNORE = "net/ipv4/conf/all/arp_ignore"


class BridgeBinding(BindMechanism):
    name = "bridge"
    needs_router6 = True

    def plan(self, ctx: BindContext) -> NetPlan:
        nic, names = ctx.pod_nic, ctx.names
        bridge_addrs = (
            (ipaddress.IPv4Interface(f"{ctx.server_ip}/32"),) if nic.ipv4 is not None else ()
        )
        links = (
            LinkSpec(
                name=names.bridge,
                kind="bridge",
                mac=ctx.bridge_mac,
                addresses=bridge_addrs,
                up=True,
            ),
            LinkSpec(
                name=names.nic,
                index=nic.link.index,
                mac=ctx.nic_mac,
                master=names.bridge,
                addresses=(),
                up=True,
                learning=False,
            ),
            LinkSpec(
                name=names.tap,
                kind="tap",
                mtu=nic.link.mtu,
                master=names.bridge,
                up=True,
                tap=ctx.tap,
            ),
            LinkSpec(
                name=names.dummy,
                kind="dummy",
                mac=nic.link.mac,
                mtu=nic.link.mtu,
                addresses=nic.link.addresses,
                up=False,
                optional=True,
            ),
        )
        sysctls = ((ARP_IGNORE, "1"),) if nic.ipv4 is not None else ()
        return NetPlan(links=links, sysctls=sysctls)

    def unplan(self, ctx: BindContext) -> NetPlan:
        nic, names = ctx.pod_nic, ctx.names
        links = (
            LinkSpec(name=names.tap, kind="tap", absent=True),
            LinkSpec(name=names.dummy, kind="dummy", absent=True),
            LinkSpec(name=names.bridge, kind="bridge", absent=True),
            LinkSpec(
                name=nic.link.name,
                index=nic.link.index,
                mac=nic.link.mac,
                mtu=nic.link.mtu,
                addresses=nic.link.addresses,
                up=nic.link.up,
                routes=nic.routes if nic.link.up else None,
            ),
        )
        return NetPlan(links=links)

    def dhcp_config(self, ctx: BindContext) -> DhcpConfig | None:
        """The lease for the VM: the pod's IPv4, gateway and routes (docs/kubevirt.md, Discovery).

        None when the pod has no global IPv4 (IPAM disabled: plain L2).
        """
        nic = ctx.pod_nic
        if nic.ipv4 is None:
            return None
        assert isinstance(nic.ipv4, ipaddress.IPv4Interface)
        routes = _v4_routes(nic)
        if not routes and not any(r.destination.version == 4 for r in nic.routes):
            raise DiscoveryError(
                f"discover {nic.name}: no gateway address found in routes for {nic.name}"
            )
        default = next((r for r in routes if r.destination.prefixlen == 0), None)
        first_gw = next((r.gateway for r in routes if r.gateway is not None), None)
        router = default.gateway if default is not None else first_gw
        return DhcpConfig(
            client_mac=ctx.vm_mac,
            address=nic.ipv4,
            server_id=ctx.server_ip,
            router=router,
            routes=routes,
            mtu=nic.link.mtu,
        )

    def announced(
        self, ctx: BindContext
    ) -> tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, ...]:
        """The pod's global addresses: the VM has them now, at its own MAC."""
        return tuple(
            a.interface.ip for a in ctx.pod_nic.link.addresses if is_global_unicast(a.interface.ip)
        )

    def dhcp6_config(self, ctx: BindContext) -> Dhcp6Config | None:
        """The pod's IPv6 address by DHCPv6, its router by RAs (docs/ipv6.md, Bridge binding).

        Served on the tap to the VM's MAC alone. The RA names the pod's own
        router (its link-local address and MAC, found by phase 1), so the
        VM's default route is the one the pod had; without one the RA has
        router lifetime 0 and only puts the pod's prefix on-link. None when
        the pod has no global IPv6.
        """
        nic = ctx.pod_nic
        if nic.ipv6 is None:
            return None
        assert isinstance(nic.ipv6, ipaddress.IPv6Interface)
        router, mtu = nic.router6, nic.link.mtu
        return Dhcp6Config(
            client_mac=ctx.vm_mac,
            address=nic.ipv6,
            server_mac=ctx.bridge_mac,
            mtu=mtu if mtu >= MIN_MTU else None,
            router_lifetime=DEFAULT_ROUTER_LIFETIME if router is not None else 0,
            router=router.address if router is not None else None,
            router_mac=router.mac if router is not None else None,
            tap_only=True,
        )


def _v4_routes(nic: PodNic) -> tuple[Route, ...]:
    """IPv4 routes through the pod NIC but the connected one, as option 121 wants."""
    assert nic.ipv4 is not None
    out = []
    for r in nic.routes:
        if r.destination.version != 4 or r.protocol == RTPROT_KERNEL:
            continue
        if r.destination == nic.ipv4.network and r.gateway is None:
            continue
        gw = r.gateway if isinstance(r.gateway, ipaddress.IPv4Address) else None
        assert isinstance(r.destination, ipaddress.IPv4Network)
        out.append(Route(destination=r.destination, gateway=gw))
    return tuple(out)
