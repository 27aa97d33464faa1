"""Masquerade binding: the VM sits behind NAT on the pod IP (docs/kubevirt.md, Masquerade binding).

Links: bridge `k6t-S` (MAC 02:00:00:00:00:00, pod MTU, up, the gateway
address of each family the pod has: 10.0.2.1/24 and fd10:0:2::1/120 by
default, from `pod.vmNetworkCIDR` / `pod.vmIPv6NetworkCIDR`), and the tap.
The pod NIC is not touched. A pod NIC without a global address is bad
input (DiscoveryError): there is nothing to NAT the VM to.

Sysctls: ip_forward when the pod has IPv4 (with route_localnet on the
bridge, for the loopback DNAT); IPv6 forwarding when it has IPv6.

NAT: `vmnet.plan.nat.render` for each family, applied in one transaction.

The guest gets host #2 of each CIDR (10.0.2.2, fd10:0:2::2) in every pod of
the VM; only the VM MAC gets the DHCP lease (KubeVirt answers any client).
IPv6 comes by DHCPv6 with router advertisements from the bridge (M and O
flags, a default route via the bridge's link-local address), which
KubeVirt does not send, leaving its guests without an IPv6 route.

Unplug deletes the tap, the bridge and vmnet's NAT tables; the sysctls go
back to their recorded values with the rest of the VM's.
"""

from __future__ import annotations

import ipaddress

from vmnet.core.addr import MacAddress
from vmnet.core.errors import ConfigError, DiscoveryError
from vmnet.plan import nat as nft
from vmnet.plan.bindings import BindContext, BindMechanism
from vmnet.plan.state import LinkSpec, NetPlan
from vmnet.protocols.dhcp4.config import DhcpConfig, Route
from vmnet.protocols.dhcp6.config import Dhcp6Config

BRIDGE_MAC = MacAddress(b"\x02\x00\x00\x00\x00\x00")
DEFAULT_V4 = ipaddress.IPv4Network("10.0.2.0/24")
DEFAULT_V6 = ipaddress.IPv6Network("fd10:0:2::/120")
ISTIO_ANNOTATION = "sidecar.istio.io/inject"


def gateway_and_vm(
    cidr: ipaddress.IPv4Network | ipaddress.IPv6Network,
) -> tuple[
    ipaddress.IPv4Interface | ipaddress.IPv6Interface,
    ipaddress.IPv4Interface | ipaddress.IPv6Interface,
]:
    """Host #1 (gateway) and host #2 (VM) of `cidr`, with its prefix."""
    if cidr.num_addresses < 4:
        raise ConfigError("vmNetworkCIDR", f"{cidr}: less than 4 addresses on network")
    prefix = cidr.prefixlen
    gw = ipaddress.ip_interface(f"{cidr.network_address + 1}/{prefix}")
    vm = ipaddress.ip_interface(f"{cidr.network_address + 2}/{prefix}")
    return gw, vm


class MasqueradeBinding(BindMechanism):
    name = "masquerade"

    def _cidrs(self, ctx: BindContext) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        out: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        if ctx.pod_nic.ipv4 is not None:
            out.append(ctx.network.vm_cidr or DEFAULT_V4)
        if ctx.pod_nic.ipv6 is not None:
            out.append(ctx.network.vm_ipv6_cidr or DEFAULT_V6)
        return out

    def plan(self, ctx: BindContext) -> NetPlan:
        nic, names = ctx.pod_nic, ctx.names
        cidrs = self._cidrs(ctx)
        if not cidrs:
            raise DiscoveryError(
                f"discover {nic.name}: masquerade needs a global IPv4 or IPv6 "
                f"address on the pod NIC to NAT to; {nic.name} has none"
            )
        links = (
            LinkSpec(
                name=names.bridge,
                kind="bridge",
                mac=BRIDGE_MAC,
                mtu=nic.link.mtu,
                addresses=tuple(gateway_and_vm(c)[0] for c in cidrs),
                up=True,
            ),
            LinkSpec(
                name=names.tap,
                kind="tap",
                mtu=nic.link.mtu,
                master=names.bridge,
                up=True,
                tap=ctx.tap,
            ),
        )
        sysctls: list[tuple[str, str]] = []
        if nic.ipv4 is not None:
            sysctls += [
                ("net/ipv4/ip_forward", "1"),
                (f"net/ipv4/conf/{names.bridge}/route_localnet", "1"),
            ]
        if nic.ipv6 is not None:
            sysctls.append(("net/ipv6/conf/all/forwarding", "1"))
        return NetPlan(links=links, sysctls=tuple(sysctls), nft=self.nat(ctx))

    def nat(self, ctx: BindContext) -> tuple[nft.NatTable, ...]:
        specs = []
        istio = ctx.annotations.get(ISTIO_ANNOTATION, "").lower() == "true"
        ports = tuple((p.protocol.lower(), p.port) for p in ctx.iface.ports)
        for cidr in self._cidrs(ctx):
            gw, vm = gateway_and_vm(cidr)
            pod_ip = ctx.pod_nic.ipv4 if cidr.version == 4 else ctx.pod_nic.ipv6
            specs.append(
                nft.NatSpec(
                    family="ip" if cidr.version == 4 else "ip6",
                    pod_iface=ctx.names.pod_iface,
                    bridge=ctx.names.bridge,
                    vm_ip=vm.ip,
                    gateway=gw.ip,
                    pod_ip=pod_ip.ip if pod_ip else None,
                    ports=ports,
                    istio=istio,
                    marker=nft.marker_for(ctx.vmi.namespace, ctx.vmi.name),
                )
            )
        return nft.tables(specs)

    def unplan(self, ctx: BindContext) -> NetPlan:
        names = ctx.names
        links = (
            LinkSpec(name=names.tap, kind="tap", absent=True),
            LinkSpec(name=names.bridge, kind="bridge", absent=True),
        )
        families = tuple(("ip" if c.version == 4 else "ip6") for c in self._cidrs(ctx))
        return NetPlan(links=links, nft_delete=tuple((f, nft.TABLE) for f in families))

    def dhcp6_config(self, ctx: BindContext) -> Dhcp6Config | None:
        """fd10:0:2::2 by DHCPv6, announced by router advertisements."""
        if ctx.pod_nic.ipv6 is None:
            return None
        _, vm = gateway_and_vm(ctx.network.vm_ipv6_cidr or DEFAULT_V6)
        assert isinstance(vm, ipaddress.IPv6Interface)
        mtu = ctx.pod_nic.link.mtu
        return Dhcp6Config(
            client_mac=ctx.vm_mac,
            address=vm,
            server_mac=BRIDGE_MAC,
            mtu=mtu if mtu >= 1280 else None,
        )

    def dhcp_config(self, ctx: BindContext) -> DhcpConfig | None:
        if ctx.pod_nic.ipv4 is None:
            return None
        gw, vm = gateway_and_vm(ctx.network.vm_cidr or DEFAULT_V4)
        assert isinstance(vm, ipaddress.IPv4Interface) and isinstance(gw, ipaddress.IPv4Interface)
        return DhcpConfig(
            client_mac=ctx.vm_mac,
            address=vm,
            server_id=gw.ip,
            router=gw.ip,
            routes=(Route(ipaddress.IPv4Network("0.0.0.0/0"), gw.ip),),
            mtu=ctx.pod_nic.link.mtu,
        )
