"""A `Vmi` back to a plain manifest dict.

The output holds JSON types only and `parse` maps it back to an equal `Vmi`,
which the cache relies on.
"""

from __future__ import annotations

from vmnet.manifest.vmi import Binding, DhcpOptions, Interface, Network, Vmi


def to_json(vmi: Vmi) -> dict[str, object]:
    """`vmi` as a plain manifest dict (JSON types only) that `parse` maps back to an equal Vmi."""
    domain: dict[str, object] = {
        "cpu": {"cores": vmi.cpus},
        "devices": {
            "interfaces": [_iface_json(i) for i in vmi.interfaces],
            "networkInterfaceMultiqueue": vmi.network_interface_multiqueue,
            "autoattachPodInterface": bool(vmi.interfaces or vmi.networks),
        },
    }
    if vmi.memory is not None:
        domain["memory"] = {"guest": vmi.memory}
    spec: dict[str, object] = {"domain": domain, "networks": [_net_json(n) for n in vmi.networks]}
    spec.update({k: v for k, v in (("hostname", vmi.hostname), ("subdomain", vmi.subdomain)) if v})
    meta: dict[str, object] = {"name": vmi.name, "namespace": vmi.namespace}
    if vmi.uid is not None:
        meta["uid"] = vmi.uid
    annotations = dict(vmi.annotations)
    if vmi.kind == "VirtualMachine":
        spec = {"template": {"metadata": {"annotations": annotations}, "spec": spec}}
    else:
        meta["annotations"] = annotations
    return {"apiVersion": "kubevirt.io/v1", "kind": vmi.kind, "metadata": meta, "spec": spec}


def _iface_json(iface: Interface) -> dict[str, object]:
    out: dict[str, object] = {"name": iface.name}
    if iface.binding is Binding.MANAGED_TAP:
        out["binding"] = {"name": iface.binding_plugin or "managed-tap"}
    else:
        out["passtBinding" if iface.binding is Binding.PASST else str(iface.binding)] = {}
    optional = {
        "macAddress": str(iface.mac) if iface.mac else None,
        "model": iface.model,
        "pciAddress": str(iface.pci_address) if iface.pci_address else None,
        "bootOrder": iface.boot_order,
        "state": iface.state,
    }
    out.update({k: v for k, v in optional.items() if v is not None})
    if iface.ports:
        out["ports"] = [
            {"port": p.port, "protocol": p.protocol, **({"name": p.name} if p.name else {})}
            for p in iface.ports
        ]
    if iface.dhcp_options is not None:
        out["dhcpOptions"] = _dhcp_json(iface.dhcp_options)
    return out


def _dhcp_json(opts: DhcpOptions) -> dict[str, object]:
    out: dict[str, object] = {
        "ntpServers": [str(a) for a in opts.ntp_servers],
        "privateOptions": [{"option": c, "value": v} for c, v in opts.private_options],
    }
    if opts.boot_file_name is not None:
        out["bootFileName"] = opts.boot_file_name
    if opts.tftp_server_name is not None:
        out["tftpServerName"] = opts.tftp_server_name
    return out


def _net_json(net: Network) -> dict[str, object]:
    if net.kind == "multus":
        return {
            "name": net.name,
            "multus": {"networkName": net.network_name, "default": net.default},
        }
    pod = {"vmNetworkCIDR": net.vm_cidr, "vmIPv6NetworkCIDR": net.vm_ipv6_cidr}
    return {"name": net.name, "pod": {k: str(v) for k, v in pod.items() if v is not None}}
