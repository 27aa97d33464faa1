"""Discovery of the pod NIC a CNI plugin made. Read-only.

Rules (docs/kubevirt.md, Discovery):
1. The pod NIC is found by name; a missing one is `pod link (<name>) is missing`.
2. Its routes are every main-table route whose output interface is the NIC,
   both families, in kernel dump order.
3. Nothing here mutates; errors are DiscoveryError, raised before phase 1
   changes anything.
"""

from __future__ import annotations

from collections.abc import Sequence

from vmnet.apply.drivers import Netlink
from vmnet.core.errors import DiscoveryError
from vmnet.plan.state import PodNic, RouteState


def discover(
    netlink: Netlink, pod_iface: str, routes: Sequence[RouteState] | None = None
) -> PodNic:
    """Read the pod NIC `pod_iface` and its routes (from `routes`, a dump of
    the main table, when the caller already has one)."""
    link = netlink.link(name=pod_iface)
    if link is None:
        raise DiscoveryError(f"discover {pod_iface}: pod link ({pod_iface}) is missing")
    table = netlink.routes() if routes is None else routes
    routes = tuple(r for r in table if r.oif == link.index)
    return PodNic(link=link, routes=routes)


def link_names(netlink: Netlink) -> list[str]:
    return [link.name for link in netlink.links(addresses=False)]
