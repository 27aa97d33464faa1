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
import json
from collections.abc import Callable
from typing import Any

from vmnet import domain as dom
from vmnet.core.errors import ConfigError
from vmnet.core.names import PRIMARY_POD_IFACE, LinkNames, hashed_pod_iface
from vmnet.manifest import Vmi, parse
from vmnet.plan.bindings import stable_mac

VMNET = "vmnet"


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


def plugin_interfaces(
    vmi: Vmi, pod_ifaces: dict[str, str], mtu_of: Callable[[str], int | None]
) -> list[dom.DomainInterface]:
    """One `<interface>` per interface bound to vmnet's plugin, in VMI order."""
    out = []
    for iface, net in vmi.pairs():
        if iface.binding_plugin != VMNET or iface.state == "absent":
            continue
        pod_iface = pod_ifaces.get(iface.name) or (
            PRIMARY_POD_IFACE if net.is_primary else hashed_pod_iface(net.name)
        )
        tap = LinkNames.derive(pod_iface, primary=net.is_primary).tap
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
    root = dom.parse_domain(domain_xml)
    dom.decorate(root, plugin_interfaces(vmi, pod_ifaces, mtu_of))
    return dom.to_bytes(root)
