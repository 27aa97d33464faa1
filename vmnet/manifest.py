"""KubeVirt VirtualMachine / VirtualMachineInstance manifests, parsed and validated.

Rules:
1. Input is untrusted. Any problem, whatever the input (text, nesting, types),
   is a `ConfigError` whose field is the path of the offending value, e.g.
   `spec.template.spec.domain.devices.interfaces[1].macAddress`. No other
   exception escapes `parse`, `parse_text` or `load`.
2. Only the network part is strict: unknown keys inside `interfaces[]`,
   `networks[]`, `ports[]`, `dhcpOptions` and the binding and network source
   objects are errors (KubeVirt's OpenAPI schema rejects them); unknown keys
   elsewhere are ignored, since the rest of a VM spec is large and not ours.
3. A `null` is the same as an absent key (Go pointers with `omitempty`),
   except for a binding or a network source (`bridge:`, `pod:`), which must be
   a mapping: a bare `bridge:` would otherwise silently pick the default binding.
4. Defaults follow KubeVirt (`pkg/network/vmispec/defaults.go`): no interfaces
   and no networks give one masquerade interface on a pod network, both named
   `default`; an interface without a binding on the pod network is masquerade.
5. Interface and network names are DNS-1123 labels (RFC 1123, 2.1). They end up
   in link and cache file names, so nothing that could traverse a path (`/`,
   `..`, NUL, a leading dot) can pass.
6. `to_json(vmi)` gives a plain manifest dict that `parse` maps back to an
   equal `Vmi`; the cache relies on it.

The rule catalogue, with the source of each rule, is in docs/manifest.md.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from ipaddress import IPv4Address, IPv4Network, IPv6Network
from typing import NoReturn, TypeVar

import yaml

from vmnet.addr import MacAddress
from vmnet.errors import ConfigError

KINDS = ("VirtualMachine", "VirtualMachineInstance")
MODELS = frozenset({"e1000", "e1000e", "igb", "ne2k_pci", "pcnet", "rtl8139", "virtio"})
STATES = frozenset({"up", "down", "absent"})
MASQUERADE_BRIDGE_MAC = MacAddress(b"\x02\x00\x00\x00\x00\x00")
MAX_TEXT = 4 * 1024 * 1024
MAX_CPUS = 4096

_Net = TypeVar("_Net", IPv4Network, IPv6Network)
_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_API_VERSION = re.compile(r"kubevirt\.io/v[0-9]+((alpha|beta)[0-9]+)?")
_PCI = re.compile(r"([0-9a-fA-F]{4}):([0-9a-fA-F]{2}):([0-9a-fA-F]{2})\.([0-7])")
_QUANTITY = re.compile(r"[0-9]+(\.[0-9]+)?([KMGTPE]i|[mkMGTPE]|[eE][0-9]+)?")

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
}
_UNSUPPORTED = ("sriov", "slirp", "macvtap", "portRanges")
_MANAGED_TAP_NAMES = frozenset({"managed-tap", "managedtap"})


class Binding(StrEnum):
    """How a VM interface is connected to its pod network."""

    BRIDGE = "bridge"
    MASQUERADE = "masquerade"
    PASST = "passt"
    MANAGED_TAP = "managedTap"


@dataclass(frozen=True, slots=True)
class Port:
    port: int
    protocol: str = "TCP"
    name: str | None = None


@dataclass(frozen=True, slots=True)
class PciAddress:
    domain: int
    bus: int
    slot: int
    function: int

    def __str__(self) -> str:
        return f"{self.domain:04x}:{self.bus:02x}:{self.slot:02x}.{self.function:x}"


@dataclass(frozen=True, slots=True)
class DhcpOptions:
    boot_file_name: str | None = None
    tftp_server_name: str | None = None
    ntp_servers: tuple[IPv4Address, ...] = ()
    private_options: tuple[tuple[int, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Interface:
    name: str
    binding: Binding
    mac: MacAddress | None = None
    model: str | None = None
    ports: tuple[Port, ...] = ()
    pci_address: PciAddress | None = None
    boot_order: int | None = None
    dhcp_options: DhcpOptions | None = None
    state: str | None = None
    binding_plugin: str | None = None


@dataclass(frozen=True, slots=True)
class Network:
    name: str
    kind: str
    network_name: str | None = None
    default: bool = False
    vm_cidr: IPv4Network | None = None
    vm_ipv6_cidr: IPv6Network | None = None

    @property
    def is_primary(self) -> bool:
        """The pod network or the Multus default network (KubeVirt `IsPrimary`)."""
        return self.kind == "pod" or self.default


@dataclass(frozen=True, slots=True, eq=False)
class Annotations(Mapping[str, str]):
    """A hashable, immutable string-to-string mapping, kept sorted by key."""

    items_: tuple[tuple[str, str], ...] = ()

    def __getitem__(self, key: str) -> str:
        for k, v in self.items_:
            if k == key:
                return v
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return (k for k, _ in self.items_)

    def __len__(self) -> int:
        return len(self.items_)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Mapping) and dict(self.items_) == dict(other.items())

    def __hash__(self) -> int:
        return hash(self.items_)


@dataclass(frozen=True, slots=True)
class Vmi:
    kind: str
    name: str
    namespace: str = "default"
    uid: str | None = None
    annotations: Annotations = Annotations()
    hostname: str | None = None
    subdomain: str | None = None
    interfaces: tuple[Interface, ...] = ()
    networks: tuple[Network, ...] = ()
    cpus: int = 1
    memory: str | None = None
    network_interface_multiqueue: bool = False

    def pairs(self) -> tuple[tuple[Interface, Network], ...]:
        """Interface/network pairs in interface order, matched by name."""
        by_name = {n.name: n for n in self.networks}
        return tuple((i, by_name[i.name]) for i in self.interfaces)

    @property
    def primary(self) -> Network | None:
        """The first pod network or Multus default network, if any."""
        return next((n for n in self.networks if n.is_primary), None)

    def to_json(self) -> dict[str, object]:
        """This VMI as a plain manifest dict; `parse` gives back an equal `Vmi`."""
        return to_json(self)


@dataclass(frozen=True, slots=True)
class _Node:
    """A value of the input together with its path, for error messages."""

    value: object
    path: str

    def fail(self, cause: str) -> NoReturn:
        raise ConfigError(self.path or "<manifest>", cause)

    @property
    def absent(self) -> bool:
        return self.value is None

    def mapping(self, known: frozenset[str] | None = None) -> dict[str, object]:
        if self.value is None:
            return {}
        if not isinstance(self.value, dict):
            self.fail(f"must be a mapping, not {_type(self.value)}")
        for key in self.value:
            if not isinstance(key, str):
                self.fail(f"key {key!r} must be a string")
            if known is not None and key not in known:
                hint = difflib.get_close_matches(key, sorted(known), n=1)
                self.child(key).fail(
                    "unknown field" + (f"; did you mean {hint[0]!r}?" if hint else "")
                )
        return self.value

    def child(self, key: str) -> _Node:
        value = self.value.get(key) if isinstance(self.value, dict) else None
        return _Node(value, f"{self.path}.{key}" if self.path else key)

    def require(self, key: str) -> _Node:
        node = self.child(key)
        if node.absent:
            node.fail("missing")
        return node

    def elements(self) -> list[_Node]:
        if self.value is None:
            return []
        if not isinstance(self.value, list):
            self.fail(f"must be a list, not {_type(self.value)}")
        return [_Node(v, f"{self.path}[{i}]") for i, v in enumerate(self.value)]

    def text(self) -> str | None:
        if self.value is None or isinstance(self.value, str):
            return self.value
        self.fail(f"must be a string, not {_type(self.value)}")

    def integer(self, low: int, high: int | None = None) -> int | None:
        v = self.value
        if v is None:
            return None
        if not isinstance(v, int) or isinstance(v, bool):
            self.fail(f"must be an integer, not {_type(v)}")
        if v < low or (high is not None and v > high):
            self.fail(f"{v} is out of range {low}-{high}" if high else f"{v} must be >= {low}")
        return v

    def flag(self) -> bool:
        if self.value is None or isinstance(self.value, bool):
            return bool(self.value)
        self.fail(f"must be true or false, not {_type(self.value)}")

    def name(self, rule: re.Pattern[str], max_len: int, what: str) -> str:
        text = self.text()
        if text is None or text == "":
            self.fail("missing")
        if len(text) > max_len:
            self.fail(f"{text[:16]!r}... is longer than {max_len} characters")
        if not rule.fullmatch(text):
            self.fail(f"invalid {what} {text!r}: use lower-case letters, digits and '-'")
        return text


def _type(value: object) -> str:
    names = {
        dict: "a mapping",
        list: "a list",
        str: "a string",
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        type(None): "null",
    }
    return names.get(type(value), type(value).__name__)


def _label(node: _Node, what: str) -> str:
    return node.name(_LABEL, 63, what)


def parse(obj: object, *, source: str = "<manifest>") -> Vmi:
    """Validate a decoded VirtualMachine or VirtualMachineInstance manifest.

    Args:
        obj: the manifest as decoded from YAML or JSON.
        source: where it came from, used when the whole object is unusable.

    Returns:
        The validated `Vmi`, with KubeVirt's defaults applied.

    Raises:
        ConfigError: the manifest is invalid; the field is the offending path.
    """
    root = _Node(obj, "")
    if not isinstance(obj, dict):
        raise ConfigError(source, f"a manifest must be a mapping, not {_type(obj)}")
    try:
        return _parse_root(root)
    except RecursionError as err:
        raise ConfigError(source, "nested too deeply") from err


def _parse_root(root: _Node) -> Vmi:
    kind = root.require("kind").text()
    if kind not in KINDS:
        root.child("kind").fail(f"expected VirtualMachine or VirtualMachineInstance, got {kind!r}")
    api = root.require("apiVersion").text() or ""
    if not _API_VERSION.fullmatch(api):
        root.child("apiVersion").fail(f"expected kubevirt.io/<version>, got {api!r}")
    meta = root.require("metadata")
    meta.mapping()
    spec = root.require("spec")
    spec.mapping()
    if kind == "VirtualMachine":
        template = spec.require("template")
        template.mapping()
        spec, annotations = (
            template.require("spec"),
            template.child("metadata").child("annotations"),
        )
        spec.mapping()
    else:
        annotations = meta.child("annotations")
    head = Vmi(
        kind=kind,
        name=meta.require("name").name(_SUBDOMAIN, 63, "name"),
        namespace=_optional_label(meta.child("namespace"), "namespace") or "default",
        uid=meta.child("uid").text(),
        annotations=_annotations(annotations),
        hostname=_optional_label(spec.child("hostname"), "hostname"),
        subdomain=_optional_label(spec.child("subdomain"), "subdomain"),
    )
    return _parse_spec(spec, head)


def _optional_label(node: _Node, what: str) -> str | None:
    return None if node.absent else _label(node, what)


def _annotations(node: _Node) -> Annotations:
    pairs = []
    for key in node.mapping():
        value = node.child(key)
        if not isinstance(value.value, str):
            value.fail(f"must be a string, not {_type(value.value)} (quote it)")
        pairs.append((key, value.value))
    return Annotations(tuple(sorted(pairs)))


def _parse_spec(spec: _Node, head: Vmi) -> Vmi:
    domain = spec.require("domain")
    domain.mapping()
    devices = domain.require("devices")
    devices.mapping()
    interfaces, networks = _parse_pairs(spec, devices)
    cpu = domain.child("cpu")
    cpu.mapping()
    cpus = 1
    for key in ("sockets", "cores", "threads"):
        cpus *= cpu.child(key).integer(1) or 1
    if cpus > MAX_CPUS:
        cpu.fail(f"sockets*cores*threads = {cpus} is more than {MAX_CPUS} vCPUs")
    return replace(
        head,
        interfaces=interfaces,
        networks=networks,
        cpus=cpus,
        memory=_memory(domain),
        network_interface_multiqueue=devices.child("networkInterfaceMultiqueue").flag(),
    )


def _parse_pairs(spec: _Node, devices: _Node) -> tuple[tuple[Interface, ...], tuple[Network, ...]]:
    net_nodes = spec.child("networks").elements()
    networks = _parse_networks(net_nodes)
    iface_nodes = devices.child("interfaces").elements()
    autoattach = devices.child("autoattachPodInterface")
    attach = autoattach.absent or autoattach.flag()
    if not iface_nodes and not networks and attach:
        return (Interface("default", Binding.MASQUERADE),), (Network("default", "pod"),)
    refs = {net.name: (net, node) for net, node in zip(networks, net_nodes)}
    interfaces = _parse_interfaces(iface_nodes, refs)
    used = {i.name for i in interfaces}
    for net, node in zip(networks, net_nodes):
        if net.name not in used:
            node.child("name").fail(f"no interface named {net.name!r}")
    return interfaces, networks


def _memory(domain: _Node) -> str | None:
    guest = domain.child("memory")
    guest.mapping()
    node = guest.child("guest")
    if node.absent:
        resources = domain.child("resources")
        resources.mapping()
        resources.child("requests").mapping()
        node = resources.child("requests").child("memory")
    if node.absent:
        return None
    text = (
        str(node.value)
        if isinstance(node.value, int) and not isinstance(node.value, bool)
        else node.text()
    )
    if text is None or not _QUANTITY.fullmatch(text):
        node.fail(f"invalid quantity {node.value!r}")
    return text


_NET_FIELDS = frozenset({"name", "pod", "multus"})
_POD_FIELDS = frozenset({"vmNetworkCIDR", "vmIPv6NetworkCIDR"})
_MULTUS_FIELDS = frozenset({"networkName", "default"})


def _parse_networks(nodes: list[_Node]) -> tuple[Network, ...]:
    networks = tuple(_parse_network(n) for n in nodes)
    first: dict[str, int] = {}
    for i, (net, node) in enumerate(zip(networks, nodes)):
        if net.name in first:
            node.child("name").fail(
                f"duplicate network name {net.name!r} (also networks[{first[net.name]}])"
            )
        first[net.name] = i
    pods = [node for net, node in zip(networks, nodes) if net.kind == "pod"]
    defaults = [node for net, node in zip(networks, nodes) if net.default]
    if len(pods) > 1:
        pods[1].child("pod").fail("only one pod network is allowed")
    if len(defaults) > 1:
        defaults[1].child("multus").child("default").fail(
            "only one Multus default network is allowed"
        )
    if pods and defaults:
        defaults[0].child("multus").child("default").fail(
            "a Multus default network replaces the pod network; remove one"
        )
    return networks


def _parse_network(node: _Node) -> Network:
    fields = node.mapping(_NET_FIELDS)
    name = _label(node.child("name"), "network name")
    kinds = [k for k in ("pod", "multus") if k in fields]
    if len(kinds) != 1:
        node.fail("needs exactly one of 'pod: {}' or 'multus: {networkName: ...}'")
    source = node.child(kinds[0])
    if not isinstance(source.value, dict):
        source.fail(f"must be a mapping, e.g. '{kinds[0]}: {{}}'")
    if kinds[0] == "multus":
        source.mapping(_MULTUS_FIELDS)
        target = source.require("networkName")
        return Network(
            name, "multus", network_name=_nad_name(target), default=source.child("default").flag()
        )
    source.mapping(_POD_FIELDS)
    return Network(
        name,
        "pod",
        vm_cidr=_cidr(source.child("vmNetworkCIDR"), IPv4Network, 30),
        vm_ipv6_cidr=_cidr(source.child("vmIPv6NetworkCIDR"), IPv6Network, 126),
    )


def _nad_name(node: _Node) -> str:
    text = node.text() or ""
    parts = text.split("/")
    if len(parts) > 2 or not all(len(p) <= 253 and _SUBDOMAIN.fullmatch(p) for p in parts):
        node.fail(f"invalid NetworkAttachmentDefinition {text!r}: expected [namespace/]name")
    return text


def _cidr(node: _Node, cls: type[_Net], max_prefix: int) -> _Net | None:
    text = node.text()
    if text is None:
        return None
    what = "IPv4 CIDR" if cls is IPv4Network else "IPv6 CIDR"
    try:
        net = cls(text, strict=False)
    except ValueError:
        node.fail(f"invalid {what} {text!r}")
    if "/" not in text:
        node.fail(f"{text!r} has no prefix length")
    try:
        cls(text, strict=True)
    except ValueError:
        node.fail(f"{text!r} has host bits set; did you mean {net}?")
    if net.prefixlen > max_prefix:
        node.fail(f"prefix /{net.prefixlen} is too long: the longest allowed is /{max_prefix}")
    if net.is_loopback or net.is_multicast:
        node.fail(f"{net} is a loopback or multicast range")
    return net


_PORT_FIELDS = frozenset({"name", "port", "protocol"})
_DHCP_FIELDS = frozenset({"bootFileName", "tftpServerName", "ntpServers", "privateOptions"})
_PRIVATE_FIELDS = frozenset({"option", "value"})
_PORT_NAME = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?")
_NetRef = tuple[Network, _Node]


def _parse_interfaces(nodes: list[_Node], nets: dict[str, _NetRef]) -> tuple[Interface, ...]:
    interfaces = tuple(_parse_interface(node, nets) for node in nodes)
    checks = (
        ("name", "name", "interface name"),
        ("mac", "macAddress", "MAC address"),
        ("boot_order", "bootOrder", "boot order"),
        ("pci_address", "pciAddress", "PCI address"),
    )
    for attr, key, what in checks:
        first: dict[object, int] = {}
        for i, (iface, node) in enumerate(zip(interfaces, nodes)):
            value = getattr(iface, attr)
            if value is not None and value in first:
                node.child(key).fail(f"duplicate {what} {value} (also interfaces[{first[value]}])")
            first.setdefault(value, i)
    return interfaces


def _parse_interface(node: _Node, nets: dict[str, _NetRef]) -> Interface:
    fields = node.mapping(_IFACE_FIELDS)
    name = _label(node.child("name"), "interface name")
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


def _binding(
    node: _Node, fields: dict[str, object], network: Network
) -> tuple[Binding, str | None]:
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
        if plugin.lower() not in _MANAGED_TAP_NAMES:
            spec.child("name").fail(
                f"unsupported binding plugin {plugin!r}; vmnet knows managed-tap"
            )
    else:
        spec.mapping(frozenset())
    binding = Binding(_BINDINGS[keys[0]])
    if binding in (Binding.MASQUERADE, Binding.PASST) and network.kind != "pod":
        spec.fail(f"{binding} is only allowed on the pod network, and {network.name!r} is Multus")
    return binding, plugin


def _mac(node: _Node, binding: Binding) -> MacAddress | None:
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


def _ports(node: _Node, binding: Binding) -> tuple[Port, ...]:
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


def _port_name(node: _Node) -> str | None:
    text = node.text()
    if not text:
        return None
    valid = len(text) <= 15 and _PORT_NAME.fullmatch(text) and "--" not in text
    if not valid or not re.search("[a-z]", text):
        node.fail(
            f"invalid port name {text!r}: up to 15 of a-z, 0-9, '-', with a letter (IANA_SVC_NAME)"
        )
    return text


def _pci(node: _Node) -> PciAddress | None:
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


def _dhcp(node: _Node) -> DhcpOptions | None:
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


def _option_text(node: _Node) -> str | None:
    text = node.text()
    if text is not None and len(text.encode("utf-8", "surrogatepass")) > 255:
        node.fail("longer than 255 bytes, the most a DHCP option carries (RFC 2132, section 2)")
    return text


def _ipv4(node: _Node) -> IPv4Address:
    text = node.text() or ""
    try:
        return IPv4Address(text)
    except ValueError:
        node.fail(f"{text!r} is not an IPv4 address")


def _state(node: _Node, binding: Binding, network: Network) -> str | None:
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


def parse_text(text: str, *, source: str = "<manifest>") -> Vmi:
    """Parse YAML or JSON text; in a multi-document YAML, the first VM or VMI.

    Raises:
        ConfigError: syntax error (with line and column), no VM/VMI, or invalid.
    """
    if not isinstance(text, str):
        raise ConfigError(source, f"a manifest must be text, not {_type(text)}")
    if len(text) > MAX_TEXT:
        raise ConfigError(source, f"larger than {MAX_TEXT} characters")
    docs = [d for d in _decode(text, source) if d is not None]
    if len(docs) == 1:
        return parse(docs[0], source=source)
    for doc in docs:
        if isinstance(doc, dict) and doc.get("kind") in KINDS:
            return parse(doc, source=source)
    raise ConfigError(
        source, f"no VirtualMachine or VirtualMachineInstance among {len(docs)} documents"
    )


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that rejects a key written twice in one mapping, as kubectl does."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[object, object]:
        seen: set[str] = set()
        for key, _ in node.value:
            if isinstance(key, yaml.ScalarNode) and key.tag != "tag:yaml.org,2002:merge":
                if key.value in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key.value!r}", key.start_mark
                    )
                seen.add(key.value)
        return super().construct_mapping(node, deep)


def _json_object(pairs: list[tuple[str, object]]) -> dict[str, object]:
    out = dict(pairs)
    if len(out) != len(pairs):
        dup = next(k for i, (k, _) in enumerate(pairs) if k in dict(pairs[:i]))
        raise ValueError(f"duplicate key {dup!r}")
    return out


def _decode(text: str, source: str) -> list[object]:
    try:
        if text.lstrip()[:1] in ("{", "["):
            return [json.loads(text, object_pairs_hook=_json_object)]
        return list(yaml.load_all(text, Loader=_StrictLoader))
    except json.JSONDecodeError as err:
        raise ConfigError(source, f"line {err.lineno}, column {err.colno}: {err.msg}") from err
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise ConfigError(source, f"{where}{err.problem or err.context}") from err
    except yaml.YAMLError as err:
        raise ConfigError(source, f"not YAML: {err}") from err
    except ValueError as err:
        raise ConfigError(source, f"invalid value: {err}") from err
    except RecursionError as err:
        raise ConfigError(source, "nested too deeply") from err


def load(path: str) -> Vmi:
    """Read and parse a manifest file (YAML or JSON).

    Raises:
        ConfigError: field `--vmi` when the file cannot be read, else as `parse_text`.
    """
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read(MAX_TEXT + 1)
    except OSError as err:
        raise ConfigError("--vmi", f"{path}: {err.strerror or err}") from err
    except (UnicodeDecodeError, TypeError, ValueError) as err:
        raise ConfigError("--vmi", f"{path}: cannot read as UTF-8 text") from err
    return parse_text(text, source=str(path))


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
