"""The DHCP side of phase 2: the leases phase 1 cached, completed for serving.

The DHCP configuration is the cached lease (address, gateway, routes, MTU,
client MAC, server id from phase 1) plus what only the launcher knows: DNS
servers and search list from its resolv.conf, the VM's host name, and the
manifest's `dhcpOptions`.

A network phase 1 has not finished is an error, not a guess.

This module imports nothing of the domain XML or the bindings, so that
`vmnet dhcp`, which runs for the VM's whole life, stays small (no lxml).
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Iterator

from vmnet.core.errors import CacheError
from vmnet.core.names import LinkNames
from vmnet.manifest import Binding, Interface, Network, Vmi
from vmnet.phases.identity import check_same_vmi
from vmnet.plan.state import NetworkRecord, NetworkState
from vmnet.protocols import resolvconf
from vmnet.protocols.dhcp4.config import DhcpConfig
from vmnet.protocols.dhcp6.config import Dhcp6Config
from vmnet.store.cache import Cache


def finished(vmi: Vmi, cache: Cache) -> Iterator[tuple[Interface, Network, NetworkRecord]]:
    """Every interface that phase 1 finished, with its record; the cache must be `vmi`'s."""
    check_same_vmi(vmi, cache.networks(), cache.root)
    for iface, net in vmi.pairs():
        if iface.state == "absent" or iface.binding == Binding.SRIOV:
            continue
        record = cache.network(net.name)
        if record is None or record.state != NetworkState.FINISHED:
            state = "missing" if record is None else record.state.name.lower()
            raise CacheError(
                f"phase 2 {net.name}: phase 1 has not finished for this network "
                f"(cache {state}); run `vmnet plug` first"
            )
        yield iface, net, record


def hostname(vmi: Vmi) -> str:
    """`spec.hostname`, else the VM name up to its first dot, at most 63 chars."""
    return (vmi.hostname or vmi.name.split(".")[0])[:63]


def lease(cache: Cache, network: str) -> DhcpConfig | None:
    """The DHCPv4 lease phase 1 recorded for `network`, validated; None if it has none."""
    config: DhcpConfig | None = cache.load("dhcp", network, DhcpConfig)
    return config


def lease6(cache: Cache, network: str) -> Dhcp6Config | None:
    """The DHCPv6 lease phase 1 recorded for `network`, validated; None if it has none."""
    config: Dhcp6Config | None = cache.load("dhcp6", network, Dhcp6Config)
    return config


def dhcp_configs(
    vmi: Vmi, cache: Cache, resolv: resolvconf.ResolvConf
) -> list[tuple[str, DhcpConfig]]:
    """(serving bridge, configuration) for every network that gets DHCP."""
    out = []
    for iface, net, record in finished(vmi, cache):
        base = lease(cache, net.name)
        if base is None:
            continue
        names = LinkNames.derive(record.pod_iface, primary=record.primary)
        out.append((names.bridge, complete(vmi, iface, base, resolv)))
    return out


def dhcp6_configs(
    vmi: Vmi, cache: Cache, resolv: resolvconf.ResolvConf
) -> list[tuple[str, Dhcp6Config]]:
    """(serving link, configuration) for every network that gets DHCPv6 and RAs:
    the bridge, or the VM's tap for a `tap_only` config (the bridge binding)."""
    out = []
    for _iface, net, record in finished(vmi, cache):
        base = lease6(cache, net.name)
        if base is None:
            continue
        names = LinkNames.derive(record.pod_iface, primary=record.primary)
        link = names.tap if base.tap_only else names.bridge
        dns = tuple(a for a in resolv.nameservers if isinstance(a, ipaddress.IPv6Address))
        search = resolvconf.with_subdomain(resolv.search, vmi.subdomain)
        out.append((link, dataclasses.replace(base, dns=dns, search=search)))
    return out


def complete(
    vmi: Vmi, iface: Interface, base: DhcpConfig, resolv: resolvconf.ResolvConf
) -> DhcpConfig:
    """Phase 1's lease with what only phase 2 knows: DNS, search list, host
    name and the interface's `dhcpOptions`."""
    extra: dict[str, object] = {
        "dns": resolv.ipv4_nameservers,
        "search": resolvconf.with_subdomain(resolv.search, vmi.subdomain),
        "hostname": hostname(vmi),
    }
    opts = iface.dhcp_options
    if opts is not None:
        extra.update(
            ntp=opts.ntp_servers,
            tftp_server=opts.tftp_server_name,
            boot_file=opts.boot_file_name,
            private_options=tuple((code, value.encode()) for code, value in opts.private_options),
        )
    return dataclasses.replace(base, **extra)  # type: ignore[arg-type]
