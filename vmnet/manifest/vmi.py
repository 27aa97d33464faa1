"""The validated manifest as frozen values, and the constants it is checked against.

Every value here is frozen and hashable; a `Vmi` equals another parsed from
`to_json` of it.

Constants follow KubeVirt: `MODELS` is the NIC models libvirt accepts for an
interface, `STATES` the `state` values, and `MASQUERADE_BRIDGE_MAC` the MAC
KubeVirt gives the masquerade bridge (no VM may take it).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from ipaddress import IPv4Address, IPv4Network, IPv6Network

from vmnet.core.addr import MacAddress

KINDS = ("VirtualMachine", "VirtualMachineInstance")
MODELS = frozenset({"e1000", "e1000e", "igb", "ne2k_pci", "pcnet", "rtl8139", "virtio"})
STATES = frozenset({"up", "down", "absent"})
MASQUERADE_BRIDGE_MAC = MacAddress(b"\x02\x00\x00\x00\x00\x00")
MAX_TEXT = 4 * 1024 * 1024
MAX_CPUS = 4096


class Binding(StrEnum):
    """How a VM interface is connected to its pod network."""

    BRIDGE = "bridge"
    MASQUERADE = "masquerade"
    PASST = "passt"
    MANAGED_TAP = "managedTap"
    SRIOV = "sriov"  # a host device: vmnet plugs nothing for it (KubeVirt's phase 1 skips it)


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
        from vmnet.manifest.serialize import to_json  # serialize imports this module

        return to_json(self)
