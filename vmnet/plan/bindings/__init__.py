"""Bindings: how one VM interface is connected to one pod network.

A binding is pure: from a `BindContext` (what discovery found plus the
manifest) it returns data: the NetPlan to apply, the undo plan, the DHCP
configuration and the domain interface. `apply` does all side effects.

`BindMechanism` is the only ABC in vmnet; `binding_for()` picks one.
"""

from __future__ import annotations

import abc
import enum
import hashlib
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field

from vmnet import domain as dom
from vmnet.core.addr import MacAddress
from vmnet.core.names import LinkNames
from vmnet.manifest import Binding, Interface, Network, Vmi
from vmnet.plan.state import NetPlan, NetworkRecord, PodNic, TapSpec
from vmnet.protocols.dhcp4.config import DhcpConfig
from vmnet.protocols.dhcp6.config import Dhcp6Config

LINK_LOCAL_BASE = ipaddress.IPv4Address("169.254.75.10")


@dataclass(frozen=True, slots=True)
class BindContext:
    """Everything a binding needs to plan one network: the manifest's view of
    it and the record phase 1 keeps of it (so a plan made from the cache is
    the plan made before the first mutation)."""

    vmi: Vmi
    iface: Interface
    network: Network
    record: NetworkRecord
    names: LinkNames = field(init=False)

    def __post_init__(self) -> None:
        names = LinkNames.derive(self.record.pod_iface, primary=self.record.primary)
        object.__setattr__(self, "names", names)

    @property
    def pod_nic(self) -> PodNic:
        return self.record.pod_nic

    @property
    def nic_mac(self) -> MacAddress:
        return self.record.nic_mac

    @property
    def vm_mac(self) -> MacAddress:
        return self.record.vm_mac

    @property
    def tap(self) -> TapSpec:
        return self.record.tap

    @property
    def index(self) -> int:
        return self.record.index

    @property
    def annotations(self) -> Mapping[str, str]:
        return self.vmi.annotations

    @property
    def bridge_mac(self) -> MacAddress:
        """A locally administered MAC fixed by the VM identity and network.

        The same in every pod of the VM, so a guest's ARP entry for the DHCP
        server identifier stays valid across restarts and migrations.
        """
        key = f"vmnet-bridge/{self.vmi.namespace}/{self.vmi.name}/{self.network.name}"
        return MacAddress.random_local(hashlib.sha256(key.encode()).digest()[:6])

    @property
    def server_ip(self) -> ipaddress.IPv4Address:
        """169.254.75.1k for k < 10 as KubeVirt; 169.254.75.(10+k) beyond."""
        return LINK_LOCAL_BASE + self.index


class BindMechanism(abc.ABC):
    """The contract every binding fulfils."""

    name: str
    # whether phase 1 looks for the pod's IPv6 router before planning (`PodNic.router6`)
    needs_router6: bool = False

    @abc.abstractmethod
    def plan(self, ctx: BindContext) -> NetPlan:
        """The pod netns as this binding wants it."""

    @abc.abstractmethod
    def unplan(self, ctx: BindContext) -> NetPlan:
        """The plan that puts the pod netns back as the CNI left it."""

    def sysctl_keys(self, ctx: BindContext) -> tuple[str, ...]:
        return tuple(key for key, _ in self.plan(ctx).sysctls)

    def dhcp_config(self, ctx: BindContext) -> DhcpConfig | None:
        """The DHCPv4 lease for the guest, or None when this binding serves none."""
        return None

    def dhcp6_config(self, ctx: BindContext) -> Dhcp6Config | None:
        """The DHCPv6 lease (and router advertisements) for the guest, if any."""
        return None

    def announced(
        self, ctx: BindContext
    ) -> tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, ...]:
        """Addresses phase 1 announces at the VM's MAC once the plan is applied
        (`vmnet.protocols.announce`): those the VM took over from the pod."""
        return ()

    def tap_name(self, ctx: BindContext) -> str:
        """The tap the domain's `<target dev>` names."""
        return ctx.names.tap

    def domain_interface(self, ctx: BindContext) -> dom.DomainInterface:
        """The libvirt `<interface>` phase 2 writes (docs/kubevirt.md, Domain XML)."""
        iface = ctx.iface
        return dom.DomainInterface(
            alias=iface.name,
            type="ethernet",
            mac=ctx.vm_mac,
            model=iface.model or "virtio",
            target=self.tap_name(ctx),
            mtu=ctx.pod_nic.link.mtu,
            boot_order=iface.boot_order,
            pci_address=iface.pci_address,
            link_down=iface.state == "down",
        )


class MacSource(enum.StrEnum):
    """Where the VM's MAC comes from when the manifest has no `macAddress`."""

    STABLE = "stable"  # derived from the VM identity: the same in every pod (vmnet default)
    POD = "pod"  # the pod NIC's original MAC, as KubeVirt does: changes with every pod


def stable_mac(namespace: str, vm_name: str, network: str) -> MacAddress:
    """A locally administered unicast MAC fixed by (namespace, VM name, network)."""
    key = f"vmnet-vm-mac/{namespace}/{vm_name}/{network}"
    return MacAddress.random_local(hashlib.sha256(key.encode()).digest()[:6])


def choose_vm_mac(
    iface_mac: MacAddress | None,
    source: MacSource,
    namespace: str,
    vm_name: str,
    network: str,
    pod_mac: MacAddress | None,
) -> MacAddress:
    """The manifest's MAC, else the stable one, else (KubeVirt) the pod NIC's."""
    if iface_mac is not None:
        return iface_mac
    if source == MacSource.STABLE or pod_mac is None:
        return stable_mac(namespace, vm_name, network)
    return pod_mac


def binding_for(binding: Binding) -> BindMechanism:
    from vmnet.plan.bindings.bridge import BridgeBinding
    from vmnet.plan.bindings.managedtap import ManagedTapBinding
    from vmnet.plan.bindings.masquerade import MasqueradeBinding
    from vmnet.plan.bindings.passt import PasstBinding

    table: dict[Binding, BindMechanism] = {
        Binding.BRIDGE: BridgeBinding(),
        Binding.MASQUERADE: MasqueradeBinding(),
        Binding.PASST: PasstBinding(),
        Binding.MANAGED_TAP: ManagedTapBinding(),
    }
    try:
        return table[binding]
    except KeyError:
        from vmnet.core.errors import ConfigError

        raise ConfigError("binding", f"{binding.value} binding is not implemented yet") from None
