"""passt binding: user-mode networking, no links in the pod (docs/kubevirt.md, passt binding).

Phase 1 creates no link. It lets the VM's group open ICMP echo sockets
(`net.ipv4.ping_group_range`) and bind low ports
(`net.ipv4.ip_unprivileged_port_start=0`), as KubeVirt does for passt
running as uid/gid 107; with `--tap-owner` the owner's group is used.

Phase 2 writes `<interface type='user'>` with `<backend type='passt'/>`,
`<source dev=POD_IFACE/>` and `<portForward>` from the manifest's ports
(KubeVirt §7.3 rules); libvirt starts passt, which serves DHCP, NDP and
DHCPv6 with the pod's own addresses. vmnet serves no DHCP.
"""

from __future__ import annotations

from vmnet import domain as dom
from vmnet.plan.bindings import BindContext, BindMechanism
from vmnet.plan.bindings.masquerade import ISTIO_ANNOTATION
from vmnet.plan.state import NetPlan

KUBEVIRT_GID = 107
PASST_LOG = "/var/run/kubevirt/passt.log"


class PasstBinding(BindMechanism):
    name = "passt"

    def plan(self, ctx: BindContext) -> NetPlan:
        gid = ctx.tap.gid or KUBEVIRT_GID
        return NetPlan(
            sysctls=(
                ("net/ipv4/ping_group_range", f"{gid} {gid}"),
                ("net/ipv4/ip_unprivileged_port_start", "0"),
            )
        )

    def unplan(self, ctx: BindContext) -> NetPlan:
        return NetPlan()

    def domain_interface(self, ctx: BindContext) -> dom.DomainInterface:
        istio = ctx.annotations.get(ISTIO_ANNOTATION, "").lower() == "true"
        ports = [(p.protocol, p.port) for p in ctx.iface.ports]
        return dom.DomainInterface(
            alias=ctx.iface.name,
            type="user",
            mac=ctx.vm_mac,
            model=ctx.iface.model or "virtio",
            boot_order=ctx.iface.boot_order,
            pci_address=ctx.iface.pci_address,
            link_down=ctx.iface.state == "down",
            source_dev=ctx.names.pod_iface,
            port_forwards=dom.passt_port_forwards(ports, istio=istio),
        )
