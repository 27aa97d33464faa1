"""`interfaces[]`: binding, MAC, model, ports, PCI address, DHCP options, state.

Exactly one binding per interface, and it must be a mapping; none means
masquerade on the pod network and is an error on Multus.

Masquerade and passt only on the pod network; ports only with them.

Name, MAC, boot order and PCI address are unique across interfaces.

DHCP option values fit in one option: at most 255 bytes (RFC 2132, 2).
"""

from __future__ import annotations

import re
from ipaddress import IPv4Address

from vmnet.core.addr import MacAddress
from vmnet.manifest.nodes import Node, dns_label
from vmnet.manifest.vmi import (
    MASQUERADE_BRIDGE_MAC,
    MODELS,
    STATES,
    Binding,
    DhcpOptions,
    Interface,
    Network,
    PciAddress,
    Port,
)

_PCI = re.compile(r"([0-9a-fA-F]{4}):([0-9a-fA-F]{2}):([0-9a-fA-F]{2})\.([0-7])")

_IFACE_FIELDS = frozenset(
    {
        "name",
        "model",
        "macAddress",
        "ports",
        "bootOrder",
        "pciAddress",
        "dhcpOptions",
        "state",
        "tag",
        "acpiIndex",
        "bridge",
        "masquerade",
        "passt",
        "passtBinding",
        "binding",
        "sriov",
        "slirp",
        "macvtap",
        "portRanges",
    }
)
_BINDINGS = {
    "bridge": "bridge",
    "masquerade": "masquerade",
    "passt": "passt",
    "passtBinding": "passt",
    "binding": "managedTap",
    "sriov": "sriov",
}
_UNSUPPORTED = ("slirp", "macvtap", "portRanges")
# KubeVirt binding plugins vmnet implements: its own ("vmnet", the bridge binding),
# KubeVirt's passt sidecar plugin ("passt", KubeVirt <= 1.7) and the
# tap-attachment plugins whose device the CNI makes.
_PLUGINS = {
    "vmnet": Binding.BRIDGE,  # vmnet's own binding plugin (docs/kubevirt.md, Binding plugins)
    "managed-tap": Binding.MANAGED_TAP,
    "managedtap": Binding.MANAGED_TAP,
    "macvtap": Binding.MANAGED_TAP,
    "passt": Binding.PASST,
}
_PORT_FIELDS = frozenset({"name", "port", "protocol"})
_DHCP_FIELDS = frozenset({"bootFileName", "tftpServerName", "ntpServers", "privateOptions"})
_PRIVATE_FIELDS = frozenset({"option", "value"})
_PORT_NAME = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?")
_NetRef = tuple[Network, Node]


def parse_interfaces(nodes: list[Node], nets: dict[str, _NetRef]) -> tuple[Interface, ...]:
    interfaces = tuple(_parse_interface(node, nets) for node in nodes)
    checks = (
        ("name", "name", "interface name"),
        ("mac", "macAddress", "MAC address"),
        ("boot_order", "bootOrder", "boot order"),
        ("pci_address", "pciAddress", "PCI address"),
    )
    for attr, key, what in checks:
        first: dict[object, int] = {}
        for i, (iface, node) in enumerate(zip(interfaces, nodes, strict=False)):
            value = getattr(iface, attr)
            if value is not None and value in first:
                node.child(key).fail(f"duplicate {what} {value} (also interfaces[{first[value]}])")
            first.setdefault(value, i)
    return interfaces


def _parse_interface(node: Node, nets: dict[str, _NetRef]) -> Interface:
    fields = node.mapping(_IFACE_FIELDS)
    name = dns_label(node.child("name"), "interface name")
    for key in _UNSUPPORTED:
        if key in fields:
            node.child(key).fail("not supported by vmnet")
    if name not in nets:
        node.child("name").fail(f"no network named {name!r}")
    network, net_node = nets[name]
    binding, plugin = _binding(node, fields, network)
    if binding is not Binding.MASQUERADE:
        for key in ("vmNetworkCIDR", "vmIPv6NetworkCIDR"):
            if not net_node.child("pod").child(key).absent:
                net_node.child("pod").child(key).fail(f"only applies to masquerade, not {binding}")
    node.child("tag").text()
    node.child("acpiIndex").integer(0)
    model = node.child("model").text() or None
    if model is not None and model not in MODELS:
        node.child("model").fail(
            f"unsupported model {model!r}; use one of {', '.join(sorted(MODELS))}"
        )
    return Interface(
        name=name,
        binding=binding,
        mac=_mac(node.child("macAddress"), binding),
        model=model,
        ports=_ports(node.child("ports"), binding),
        pci_address=_pci(node.child("pciAddress")),
        boot_order=node.child("bootOrder").integer(1),
        dhcp_options=_dhcp(node.child("dhcpOptions")),
        state=_state(node.child("state"), binding, network),
        binding_plugin=plugin,
    )


def _binding(node: Node, fields: dict[str, object], network: Network) -> tuple[Binding, str | None]:
    keys = [k for k in _BINDINGS if k in fields]
    if len(keys) > 1:
        node.fail(f"more than one binding: {', '.join(keys)}")
    if not keys:
        if network.kind == "pod":
            return Binding.MASQUERADE, None
        node.fail(
            "no binding: a Multus network needs 'bridge: {}' or 'binding: {name: managed-tap}'"
        )
    spec = node.child(keys[0])
    if not isinstance(spec.value, dict):
        spec.fail(f"must be a mapping, e.g. '{keys[0]}: {{}}'")
    plugin = None
    if keys[0] == "binding":
        spec.mapping(frozenset({"name"}))
        plugin = spec.require("name").text() or ""
        if plugin.lower() not in _PLUGINS:
            spec.child("name").fail(
                f"unsupported binding plugin {plugin!r}; vmnet knows {', '.join(sorted(_PLUGINS))}"
            )
        binding = _PLUGINS[plugin.lower()]
    else:
        spec.mapping(frozenset())
        binding = Binding(_BINDINGS[keys[0]])
    if binding in (Binding.MASQUERADE, Binding.PASST) and network.kind != "pod":
        spec.fail(f"{binding} is only allowed on the pod network, and {network.name!r} is Multus")
    if binding is Binding.SRIOV and network.kind != "multus":
        spec.fail(f"sriov needs a Multus network, and {network.name!r} is the pod network")
    return binding, plugin


def _mac(node: Node, binding: Binding) -> MacAddress | None:
    text = node.text()
    if not text:
        return None
    try:
        mac = MacAddress.parse(text)
    except ValueError:
        node.fail(f"invalid MAC address {text!r}")
    if mac.is_multicast or mac.is_zero:
        node.fail(f"{mac} is a multicast or all-zero address, not a NIC address")
    if binding is Binding.MASQUERADE and mac == MASQUERADE_BRIDGE_MAC:
        node.fail(f"{mac} is reserved for the masquerade bridge")
    return mac


def _ports(node: Node, binding: Binding) -> tuple[Port, ...]:
    items = node.elements()
    if items and binding not in (Binding.MASQUERADE, Binding.PASST):
        node.fail(f"ports are only used by masquerade and passt, not {binding}")
    ports: list[Port] = []
    for item in items:
        item.mapping(_PORT_FIELDS)
        number = item.require("port").integer(1, 65535) or 0
        protocol = (item.child("protocol").text() or "TCP").upper()
        if protocol not in ("TCP", "UDP"):
            item.child("protocol").fail(f"protocol must be TCP or UDP, not {protocol!r}")
        port = Port(number, protocol, _port_name(item.child("name")))
        if any((p.port, p.protocol) == (number, protocol) for p in ports):
            item.child("port").fail(f"duplicate port {number}/{protocol}")
        if port.name is not None and any(p.name == port.name for p in ports):
            item.child("name").fail(f"duplicate port name {port.name!r}")
        ports.append(port)
    return tuple(ports)


def _port_name(node: Node) -> str | None:
    text = node.text()
    if not text:
        return None
    valid = len(text) <= 15 and _PORT_NAME.fullmatch(text) and "--" not in text
    if not valid or not re.search("[a-z]", text):
        node.fail(
            f"invalid port name {text!r}: up to 15 of a-z, 0-9, '-', with a letter (IANA_SVC_NAME)"
        )
    return text


def _pci(node: Node) -> PciAddress | None:
    text = node.text()
    if not text:
        return None
    match = _PCI.fullmatch(text)
    if match is None:
        node.fail(f"invalid PCI address {text!r}: expected dddd:bb:ss.f")
    domain, bus, slot, function = (int(g, 16) for g in match.groups())
    if slot > 0x1F:
        node.fail(f"PCI slot {slot:#x} is above 0x1f")
    return PciAddress(domain, bus, slot, function)


def _dhcp(node: Node) -> DhcpOptions | None:
    if node.absent:
        return None
    node.mapping(_DHCP_FIELDS)
    private: list[tuple[int, str]] = []
    for item in node.child("privateOptions").elements():
        item.mapping(_PRIVATE_FIELDS)
        code = item.require("option").integer(224, 254) or 0
        if any(c == code for c, _ in private):
            item.child("option").fail(f"duplicate private option {code}")
        private.append((code, _option_text(item.require("value")) or ""))
    return DhcpOptions(
        boot_file_name=_option_text(node.child("bootFileName")) or None,
        tftp_server_name=_option_text(node.child("tftpServerName")) or None,
        ntp_servers=tuple(_ipv4(n) for n in node.child("ntpServers").elements()),
        private_options=tuple(private),
    )


def _option_text(node: Node) -> str | None:
    text = node.text()
    if text is not None and len(text.encode("utf-8", "surrogatepass")) > 255:
        node.fail("longer than 255 bytes, the most a DHCP option carries (RFC 2132, section 2)")
    return text


def _ipv4(node: Node) -> IPv4Address:
    text = node.text() or ""
    try:
        return IPv4Address(text)
    except ValueError:
        node.fail(f"{text!r} is not an IPv4 address")


def _state(node: Node, binding: Binding, network: Network) -> str | None:
    state = node.text()
    if not state:
        return None
    if state not in STATES:
        node.fail(f"state must be up, down or absent, not {state!r}")
    if state == "absent" and network.is_primary:
        node.fail("absent is not allowed on the primary network")
    if state == "absent" and binding is not Binding.BRIDGE:
        node.fail(f"absent is only allowed with bridge binding, not {binding}")
    return state
