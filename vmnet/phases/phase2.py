"""Phase 2: the unprivileged part, from the phase-1 cache.

Nothing here touches the pod netns: phase 2 reads the manifest and the
cache, and produces the domain interfaces and the DHCP configurations.

The DHCP configurations come from `vmnet.phases.leases` (re-exported here), which
`vmnet dhcp` imports alone to stay small.

A network phase 1 has not finished is an error, not a guess.
"""

from __future__ import annotations

from vmnet import domain as dom
from vmnet.manifest import Vmi
from vmnet.phases.leases import dhcp6_configs, dhcp_configs, finished, hostname, lease, lease6
from vmnet.plan.bindings import BindContext, binding_for
from vmnet.store.cache import Cache


def domain_interfaces(vmi: Vmi, cache: Cache) -> list[dom.DomainInterface]:
    """One `<interface>` per plugged network, in manifest order."""
    return [
        binding_for(iface.binding).domain_interface(BindContext(vmi, iface, net, record))
        for iface, net, record in finished(vmi, cache)
    ]


def decorate(vmi: Vmi, cache: Cache, domain_xml: bytes | None) -> bytes:
    """The decorated domain XML, or a minimal bootable skeleton without input."""
    ifaces = domain_interfaces(vmi, cache)
    if domain_xml is None:
        return dom.to_bytes(dom.skeleton(vmi.name, ifaces))
    root = dom.parse_domain(domain_xml)
    dom.decorate(root, ifaces)
    return dom.to_bytes(root)


__all__ = [
    "binding_for",
    "decorate",
    "dhcp6_configs",
    "dhcp_configs",
    "domain_interfaces",
    "hostname",
    "lease",
    "lease6",
]
