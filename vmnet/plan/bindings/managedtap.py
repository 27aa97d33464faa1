"""managed-tap binding: the CNI plugin made the tap (Kube-OVN style).

Phase 1 only discovers: the pod interface must exist and be a tap (or a
macvtap, for KubeVirt's macvtap binding plugin); nothing in the pod netns
changes.

Phase 2 points the domain at that tap (`<target dev=POD_IFACE
managed='no'/>`) with the pod interface's MAC (or the manifest's) and MTU.
The CNI's own network serves addresses: vmnet serves no DHCP. The VM MAC
is the manifest's, else the tap's: the SDN knows the VM by it.
"""

from __future__ import annotations

from vmnet.core.errors import DiscoveryError
from vmnet.plan.bindings import BindContext, BindMechanism
from vmnet.plan.state import NetPlan


class ManagedTapBinding(BindMechanism):
    name = "managedTap"

    def plan(self, ctx: BindContext) -> NetPlan:
        link = ctx.pod_nic.link
        if link.kind not in ("tun", "macvtap"):
            raise DiscoveryError(
                f"discover {link.name}: managed tap binding needs the pod interface to be "
                f"a tap made by the CNI plugin, found {link.kind or 'a device of no kind'}"
            )
        return NetPlan()

    def unplan(self, ctx: BindContext) -> NetPlan:
        return NetPlan()

    def tap_name(self, ctx: BindContext) -> str:
        return ctx.names.pod_iface
