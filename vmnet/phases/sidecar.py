"""The hook sidecar's side of phase 2: KubeVirt's domain, decorated for vmnet.

KubeVirt runs a network binding plugin's sidecar with the VMI and asks it,
through `OnDefineDomain`, to edit the domain XML virt-launcher built. For a
binding plugin KubeVirt writes no `<interface>` (unless the plugin asks for
tap attachment), so the sidecar adds one per VMI interface whose binding is
this plugin (`binding: {name: <NETWORK_BINDING_PLUGIN_NAME>}`), as the bridge
binding's: alias `ua-<name>`, an unmanaged tap named by KubeVirt's scheme
from the pod interface (`status.interfaces[].podInterfaceName` when KubeVirt
gives it, else `eth0` for the pod network and the hashed name for Multus),
the manifest's MAC or vmnet's stable one (the same in every pod of the VM),
and the tap's MTU when the tap exists. Nothing else in the domain changes,
and decorating twice gives the same bytes (KubeVirt may call it 2-3 times
per start, and once more on a migration target).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
from collections.abc import Callable
from typing import Any

from vmnet import domain as dom
from vmnet.core.errors import ConfigError
from vmnet.core.names import PRIMARY_POD_IFACE, LinkNames, hashed_pod_iface
from vmnet.manifest import Network, Vmi, parse
from vmnet.phases.leases import complete
from vmnet.plan.bindings import stable_mac
from vmnet.protocols import resolvconf
from vmnet.protocols.dhcp4 import handoff
from vmnet.protocols.dhcp4.config import DhcpConfig
from vmnet.serve.service import Service

VMNET = "vmnet"
log = logging.getLogger(__name__)


def load_vmi(vmi_json: bytes, plugin: str) -> tuple[Vmi, dict[str, str]]:
    """The VMI KubeVirt sent, with `plugin`'s interfaces read as vmnet's, and
    each interface's pod interface name from its status, where given.

    Raises:
        ConfigError: not a VMI vmnet can read; the field is named.
    """
    try:
        obj = json.loads(vmi_json)
    except (ValueError, UnicodeDecodeError) as err:
        raise ConfigError("vmi", f"not JSON: {err}") from err
    if not isinstance(obj, dict):
        raise ConfigError("vmi", "not a JSON object")
    obj = copy.deepcopy(obj)
    obj.setdefault("apiVersion", "kubevirt.io/v1")
    obj.setdefault("kind", "VirtualMachineInstance")
    for iface in _interfaces(obj):
        binding = iface.get("binding")
        if isinstance(binding, dict) and binding.get("name") == plugin:
            iface["binding"] = {"name": VMNET}
    status = obj.pop("status", None)
    pod_ifaces = {}
    if isinstance(status, dict):
        for entry in status.get("interfaces") or ():
            if isinstance(entry, dict) and entry.get("name") and entry.get("podInterfaceName"):
                pod_ifaces[str(entry["name"])] = str(entry["podInterfaceName"])
    return parse(obj, source="vmi"), pod_ifaces


def _interfaces(obj: dict[str, Any]) -> list[dict[str, Any]]:
    spec = obj.get("spec")
    domain = spec.get("domain") if isinstance(spec, dict) else None
    devices = domain.get("devices") if isinstance(domain, dict) else None
    found = devices.get("interfaces") if isinstance(devices, dict) else None
    return [i for i in found or () if isinstance(i, dict)] if isinstance(found, list) else []


def link_names(iface: str, net: Network, pod_ifaces: dict[str, str]) -> LinkNames:
    """The links of one interface, from its pod NIC: the one KubeVirt's status
    names, else `eth0` for the pod network and the hashed name for Multus."""
    pod_iface = pod_ifaces.get(iface) or (
        PRIMARY_POD_IFACE if net.is_primary else hashed_pod_iface(net.name)
    )
    return LinkNames.derive(pod_iface, primary=net.is_primary)


def plugin_interfaces(
    vmi: Vmi, pod_ifaces: dict[str, str], mtu_of: Callable[[str], int | None]
) -> list[dom.DomainInterface]:
    """One `<interface>` per interface bound to vmnet's plugin, in VMI order."""
    out = []
    for iface, net in vmi.pairs():
        if iface.binding_plugin != VMNET or iface.state == "absent":
            continue
        tap = link_names(iface.name, net, pod_ifaces).tap
        out.append(
            dom.DomainInterface(
                alias=iface.name,
                type="ethernet",
                mac=iface.mac or stable_mac(vmi.namespace, vmi.name, net.name),
                model=iface.model or "virtio",
                target=tap,
                mtu=mtu_of(tap),
                boot_order=iface.boot_order,
                pci_address=iface.pci_address,
                link_down=iface.state == "down",
            )
        )
    return out


def on_define_domain(
    domain_xml: bytes, vmi_json: bytes, plugin: str, mtu_of: Callable[[str], int | None]
) -> bytes:
    """KubeVirt's domain XML with vmnet's interfaces in it."""
    vmi, pod_ifaces = load_vmi(vmi_json, plugin)
    return _decorated(domain_xml, plugin_interfaces(vmi, pod_ifaces, mtu_of))


def _decorated(domain_xml: bytes, ifaces: list[dom.DomainInterface]) -> bytes:
    root = dom.parse_domain(domain_xml)
    dom.decorate(root, ifaces)
    return dom.to_bytes(root)


def leases(
    vmi: Vmi,
    pod_ifaces: dict[str, str],
    ifaces: list[dom.DomainInterface],
    alias_of: Callable[[str], str | None],
    resolv: resolvconf.ResolvConf,
) -> tuple[list[tuple[str, DhcpConfig]], list[str]]:
    """(bridge, lease) for every vmnet interface whose bridge carries the lease
    vmnet-cni left on it (`vmnet.protocols.dhcp4.handoff`), completed for
    serving and given the domain's MAC; and a line for each that has none."""
    macs = {i.alias: i.mac for i in ifaces}
    out, missing = [], []
    for iface, net in vmi.pairs():
        if iface.name not in macs:
            continue
        bridge = link_names(iface.name, net, pod_ifaces).bridge
        text = alias_of(bridge)
        if not text:
            missing.append(f"{iface.name}: {bridge} carries no lease (did vmnet-cni plug it?)")
            continue
        base = dataclasses.replace(handoff.from_alias(text), client_mac=macs[iface.name])
        out.append((bridge, complete(vmi, iface, base, resolv)))
    return out, missing


class Sidecar:
    """The sidecar's state: the VMI's interfaces decorated into each domain
    KubeVirt defines, and their leases served (unprivileged DHCPv4) from the
    first definition on; a definition with other leases restarts serving."""

    def __init__(
        self,
        plugin: str,
        mtu_of: Callable[[str], int | None],
        alias_of: Callable[[str], str | None],
        resolv_conf: str = "/etc/resolv.conf",
    ) -> None:
        self.plugin, self.mtu_of, self.alias_of = plugin, mtu_of, alias_of
        self.resolv_conf = resolv_conf
        self.service: Service | None = None
        self.served: list[tuple[str, DhcpConfig]] = []

    def define(self, domain_xml: bytes, vmi_json: bytes) -> bytes:
        vmi, pod_ifaces = load_vmi(vmi_json, self.plugin)
        ifaces = plugin_interfaces(vmi, pod_ifaces, self.mtu_of)
        out = _decorated(domain_xml, ifaces)
        configs, missing = leases(
            vmi, pod_ifaces, ifaces, self.alias_of, resolvconf.load(self.resolv_conf)
        )
        for line in missing:
            log.warning("no DHCP for %s", line)
        if configs != self.served:
            self.close()
            self.service = Service(None, configs, raw=False) if configs else None
            self.served = configs
            for bridge, config in configs:
                log.info("serving %s to %s on %s", config.address, config.client_mac, bridge)
                ipv6 = handoff.ipv6_of(self.alias_of(bridge) or "")
                if ipv6 is not None:
                    log.warning(
                        "not serving %s on %s: IPv6 needs router advertisements, which need "
                        "a raw socket this sidecar (no capabilities) cannot open; the guest "
                        "gets IPv4 only",
                        ipv6,
                        bridge,
                    )
        return out

    def close(self) -> None:
        if self.service is not None:
            self.service.stop()
            self.service = None
        self.served = []
