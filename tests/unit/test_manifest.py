"""vmnet.manifest: good manifests, the bad-manifest catalogue, round trip, fuzzing."""

from __future__ import annotations

import contextlib
import copy
import errno
import json
import re
from ipaddress import IPv4Address, IPv4Network, IPv6Network
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vmnet.core.addr import MacAddress
from vmnet.core.errors import ConfigError
from vmnet.manifest import (
    MASQUERADE_BRIDGE_MAC,
    Binding,
    DhcpOptions,
    Interface,
    Network,
    PciAddress,
    Port,
    Vmi,
    load,
    parse,
    parse_text,
    to_json,
)

HERE = Path(__file__).parent / "manifests"
GOOD = sorted((HERE / "good").iterdir())
BAD = sorted((HERE / "bad").iterdir())


def good(name: str) -> Vmi:
    return load(str(HERE / "good" / name))


# ---------------------------------------------------------------- good manifests


def test_vm_bridge_on_pod_network() -> None:
    vmi = good("vm_bridge_pod.yaml")
    assert (vmi.kind, vmi.name, vmi.namespace) == ("VirtualMachine", "fedora-bridge", "vms")
    assert vmi.interfaces == (Interface("default", Binding.BRIDGE, model="virtio"),)
    assert vmi.networks == (Network("default", "pod"),)
    assert vmi.pairs() == ((vmi.interfaces[0], vmi.networks[0]),)
    assert vmi.primary == vmi.networks[0]
    assert dict(vmi.annotations) == {"kubevirt.io/allow-pod-bridge-network-live-migration": ""}
    assert (vmi.hostname, vmi.subdomain) == ("fedora", "lab")
    assert (vmi.cpus, vmi.memory, vmi.network_interface_multiqueue) == (4, "2Gi", True)


def test_vmi_masquerade_with_ports_and_cidrs() -> None:
    vmi = good("vmi_masquerade_ports.yaml")
    assert vmi.kind == "VirtualMachineInstance"
    assert vmi.uid == "6a1d4c3e-58a0-4b7e-9a4c-2f4e1e0d9b11"
    assert vmi.annotations.get("sidecar.istio.io/inject") == "true"
    assert vmi.interfaces[0].binding is Binding.MASQUERADE
    assert vmi.interfaces[0].ports == (Port(80, "TCP", "http"), Port(443), Port(53, "UDP", "dns"))
    assert vmi.networks[0].vm_cidr == IPv4Network("10.11.12.0/24")
    assert vmi.networks[0].vm_ipv6_cidr == IPv6Network("fd10:11:12::/120")
    assert (vmi.cpus, vmi.memory, vmi.namespace) == (1, "1Gi", "default")


def test_vm_masquerade_and_two_multus_bridges() -> None:
    vmi = good("vm_masquerade_two_multus.yaml")
    default, red, blue = vmi.interfaces
    assert default == Interface("default", Binding.MASQUERADE)
    assert red.mac == MacAddress.parse("02:aa:bb:cc:dd:01")
    assert red.pci_address == PciAddress(0, 0x81, 1, 0)
    assert str(red.pci_address) == "0000:81:01.0"
    assert red.boot_order == 1
    assert red.dhcp_options == DhcpOptions(
        "pxelinux.0",
        "tftp.example.org",
        (IPv4Address("192.168.2.2"), IPv4Address("192.168.2.3")),
        ((240, "private.options.kubevirt.io"),),
    )
    assert (str(blue.mac), blue.model, blue.boot_order, blue.state) == (
        "02:aa:bb:cc:dd:02",
        "e1000e",
        2,
        "down",
    )
    assert [n.network_name for n in vmi.networks] == [None, "red-net", "infra/blue-net"]
    assert [n.kind for _, n in vmi.pairs()] == ["pod", "multus", "multus"]
    assert vmi.primary is not None and vmi.primary.name == "default"


def test_passt_binding_both_spellings() -> None:
    vmi = good("vmi_passt_binding.yaml")
    assert vmi.interfaces[0].binding is Binding.PASST
    assert vmi.interfaces[0].ports == (Port(22),)
    old = to_json(vmi)
    iface = old["spec"]["domain"]["devices"]["interfaces"][0]  # type: ignore[index]
    iface["passt"] = iface.pop("passtBinding")
    assert parse(old) == vmi


def test_multus_default_primary_and_managed_tap() -> None:
    vmi = good("vmi_multus_default.yaml")
    assert vmi.primary == Network("primary", "multus", "default/ovn-primary", default=True)
    assert vmi.primary.is_primary and not vmi.networks[1].is_primary
    storage = vmi.interfaces[1]
    assert (storage.binding, storage.binding_plugin) == (Binding.MANAGED_TAP, "managed-tap")


def test_no_interfaces_gets_kubevirt_default() -> None:
    vmi = good("vm_no_interfaces.yaml")
    assert vmi.interfaces == (Interface("default", Binding.MASQUERADE),)
    assert vmi.networks == (Network("default", "pod"),)


def test_autoattach_false_means_no_network() -> None:
    doc = to_json(good("vm_no_interfaces.yaml"))
    spec = doc["spec"]["template"]["spec"]  # type: ignore[index]
    spec["networks"] = []
    spec["domain"]["devices"] = {"autoattachPodInterface": False}
    vmi = parse(doc)
    assert (vmi.interfaces, vmi.networks, vmi.primary) == ((), (), None)
    assert parse(to_json(vmi)) == vmi


def test_vmi_json() -> None:
    vmi = good("vmi.json")
    assert vmi.interfaces == (Interface("default", Binding.MASQUERADE, model="virtio"),)


def test_multi_document_takes_first_vm() -> None:
    vmi = good("multi_document.yaml")
    assert vmi.name == "second-doc"
    assert vmi.interfaces[0].binding is Binding.BRIDGE


def test_interface_without_binding_on_pod_is_masquerade() -> None:
    assert good("vmi_default_binding.yaml").interfaces[0].binding is Binding.MASQUERADE


@pytest.mark.parametrize("path", GOOD, ids=lambda p: p.name)
def test_round_trip(path: Path) -> None:
    vmi = load(str(path))
    doc = to_json(vmi)
    assert parse(json.loads(json.dumps(doc))) == vmi
    assert vmi.to_json() == doc
    assert hash(parse(doc)) == hash(vmi)


def test_plugin_name_case_insensitive() -> None:
    doc = to_json(good("vmi_multus_default.yaml"))
    doc["spec"]["domain"]["devices"]["interfaces"][1]["binding"] = {"name": "ManagedTap"}  # type: ignore[index]
    iface = parse(doc).interfaces[1]
    assert (iface.binding, iface.binding_plugin) == (Binding.MANAGED_TAP, "ManagedTap")


# ---------------------------------------------------------------- bad manifests: files


def _expectation(path: Path) -> tuple[str, str]:
    if path.suffix == ".json":
        return str(path), "line 2, column 28: Expecting property name"
    head = dict(re.findall(r"^# (field|cause): (.*)$", path.read_text(), re.MULTILINE))
    return head["field"].replace("<source>", str(path)), head["cause"]


@pytest.mark.parametrize("path", BAD, ids=lambda p: p.name)
def test_bad_file(path: Path) -> None:
    field, cause = _expectation(path)
    with pytest.raises(ConfigError) as info:
        load(str(path))
    assert info.value.field == field
    assert cause in info.value.cause
    assert "\n" not in str(info.value)


# ---------------------------------------------------------------- bad manifests: inline

IFACES = "spec.domain.devices.interfaces"
N = "spec.networks"
DELETE = object()
BASE: dict[str, Any] = {
    "apiVersion": "kubevirt.io/v1",
    "kind": "VirtualMachineInstance",
    "metadata": {"name": "vm", "annotations": {"a": "b"}},
    "spec": {
        "domain": {
            "devices": {
                "interfaces": [
                    {"name": "default", "masquerade": {}},
                    {"name": "red", "bridge": {}},
                ]
            }
        },
        "networks": [
            {"name": "default", "pod": {}},
            {"name": "red", "multus": {"networkName": "red"}},
        ],
    },
}


def mutate(changes: dict[str, object]) -> dict[str, Any]:
    doc = copy.deepcopy(BASE)
    for path, value in changes.items():
        keys: list[str | int] = [
            int(k) if k.isdigit() else k for k in re.split(r"\.|\[(\d+)\]", path) if k
        ]
        parent: Any = doc
        for key in keys[:-1]:
            parent = parent[key]
        if value is DELETE:
            del parent[keys[-1]]
        elif isinstance(parent, list) and keys[-1] == len(parent):
            parent.append(value)
        else:
            parent[keys[-1]] = value
    return doc


MAC1, MAC2 = "02:aa:00:00:00:01", "02:aa:00:00:00:02"
CASES: list[tuple[str, dict[str, object], str, str]] = [
    # (id, changes, expected field, expected cause substring)
    ("kind-missing", {"kind": DELETE}, "kind", "missing"),
    ("metadata-missing", {"metadata": DELETE}, "metadata", "missing"),
    ("name-missing", {"metadata.name": DELETE}, "metadata.name", "missing"),
    ("name-invalid", {"metadata.name": "My_VM"}, "metadata.name", "invalid name 'My_VM'"),
    ("namespace-invalid", {"metadata.namespace": "Kube_System"}, "metadata.namespace", "invalid"),
    ("annotation-int", {"metadata.annotations.a": 1}, "metadata.annotations.a", "must be a string"),
    ("hostname-invalid", {"spec.hostname": "a.b"}, "spec.hostname", "invalid hostname"),
    ("networks-not-list", {N: {"name": "x"}}, N, "must be a list, not a mapping"),
    ("interfaces-not-list", {IFACES: "eth0"}, IFACES, "must be a list, not a string"),
    ("interface-not-mapping", {f"{IFACES}[0]": "default"}, f"{IFACES}[0]", "must be a mapping"),
    ("iface-name-missing", {f"{IFACES}[0].name": DELETE}, f"{IFACES}[0].name", "missing"),
    ("iface-name-empty", {f"{IFACES}[0].name": ""}, f"{IFACES}[0].name", "missing"),
    (
        "iface-name-int",
        {f"{IFACES}[0].name": 5},
        f"{IFACES}[0].name",
        "must be a string, not an integer",
    ),
    (
        "iface-name-upper",
        {f"{IFACES}[0].name": "Default"},
        f"{IFACES}[0].name",
        "invalid interface name",
    ),
    (
        "iface-name-slash",
        {f"{IFACES}[0].name": "a/b"},
        f"{IFACES}[0].name",
        "invalid interface name",
    ),
    (
        "iface-name-dotdot",
        {f"{IFACES}[0].name": ".."},
        f"{IFACES}[0].name",
        "invalid interface name",
    ),
    (
        "iface-name-dot",
        {f"{IFACES}[0].name": ".hidden"},
        f"{IFACES}[0].name",
        "invalid interface name",
    ),
    (
        "iface-name-nul",
        {f"{IFACES}[0].name": "a\x00b"},
        f"{IFACES}[0].name",
        "invalid interface name",
    ),
    (
        "iface-name-newline",
        {f"{IFACES}[0].name": "eth0\n"},
        f"{IFACES}[0].name",
        "invalid interface name",
    ),
    ("iface-name-64", {f"{IFACES}[0].name": "a" * 64}, f"{IFACES}[0].name", "longer than 63"),
    ("net-name-invalid", {f"{N}[0].name": "pod_net"}, f"{N}[0].name", "invalid network name"),
    (
        "dup-iface-name",
        {f"{IFACES}[1]": {"name": "default", "bridge": {}}},
        f"{IFACES}[1].name",
        "duplicate interface name default (also interfaces[0])",
    ),
    ("dup-net-name", {f"{N}[1].name": "default"}, f"{N}[1].name", "duplicate network name"),
    (
        "iface-no-network",
        {f"{IFACES}[1].name": "blue"},
        f"{IFACES}[1].name",
        "no network named 'blue'",
    ),
    (
        "network-no-iface",
        {f"{N}[2]": {"name": "green", "multus": {"networkName": "g"}}},
        f"{N}[2].name",
        "no interface named 'green'",
    ),
    (
        "two-bindings",
        {f"{IFACES}[0].bridge": {}},
        f"{IFACES}[0]",
        "more than one binding: bridge, masquerade",
    ),
    (
        "passt-twice",
        {f"{IFACES}[0]": {"name": "default", "passt": {}, "passtBinding": {}}},
        f"{IFACES}[0]",
        "more than one binding",
    ),
    (
        "unknown-binding-key",
        {f"{IFACES}[0].bridgee": {}},
        f"{IFACES}[0].bridgee",
        "unknown field; did you mean 'bridge'?",
    ),
    ("unknown-net-field", {f"{N}[0].podd": {}}, f"{N}[0].podd", "unknown field"),
    ("unknown-pod-field", {f"{N}[0].pod.cidr": "x"}, f"{N}[0].pod.cidr", "unknown field"),
    (
        "unknown-multus-field",
        {f"{N}[1].multus.namespace": "x"},
        f"{N}[1].multus.namespace",
        "unknown field",
    ),
    (
        "unknown-port-field",
        {f"{IFACES}[0].ports": [{"port": 80, "proto": "TCP"}]},
        f"{IFACES}[0].ports[0].proto",
        "unknown field",
    ),
    (
        "unknown-dhcp-field",
        {f"{IFACES}[1].dhcpOptions": {"ntp": []}},
        f"{IFACES}[1].dhcpOptions.ntp",
        "unknown field",
    ),
    (
        "masquerade-not-empty",
        {f"{IFACES}[0].masquerade": {"x": 1}},
        f"{IFACES}[0].masquerade.x",
        "unknown field",
    ),
    (
        "non-string-key",
        {f"{IFACES}[0]": {"name": "default", 1: "x"}},
        f"{IFACES}[0]",
        "key 1 must be a string",
    ),
    (
        "sriov on the pod network",
        {f"{IFACES}[0]": {"name": "default", "sriov": {}}},
        f"{IFACES}[0].sriov",
        "sriov needs a Multus network",
    ),
    (
        "slirp",
        {f"{IFACES}[0]": {"name": "default", "slirp": {}}},
        f"{IFACES}[0].slirp",
        "not supported",
    ),
    (
        "macvtap",
        {f"{IFACES}[1]": {"name": "red", "macvtap": {}}},
        f"{IFACES}[1].macvtap",
        "not supported",
    ),
    ("port-ranges", {f"{IFACES}[0].portRanges": []}, f"{IFACES}[0].portRanges", "not supported"),
    (
        "plugin-unknown",
        {f"{IFACES}[1]": {"name": "red", "binding": {"name": "sriov-plugin"}}},
        f"{IFACES}[1].binding.name",
        "unsupported binding plugin 'sriov-plugin'",
    ),
    (
        "plugin-no-name",
        {f"{IFACES}[1]": {"name": "red", "binding": {}}},
        f"{IFACES}[1].binding.name",
        "missing",
    ),
    ("binding-null", {f"{IFACES}[1].bridge": None}, f"{IFACES}[1].bridge", "must be a mapping"),
    ("no-binding-multus", {f"{IFACES}[1]": {"name": "red"}}, f"{IFACES}[1]", "no binding"),
    (
        "mac-invalid",
        {f"{IFACES}[1].macAddress": "zz"},
        f"{IFACES}[1].macAddress",
        "invalid MAC address 'zz'",
    ),
    (
        "mac-multicast",
        {f"{IFACES}[1].macAddress": "01:00:5e:00:00:01"},
        f"{IFACES}[1].macAddress",
        "multicast",
    ),
    (
        "mac-broadcast",
        {f"{IFACES}[1].macAddress": "ff:ff:ff:ff:ff:ff"},
        f"{IFACES}[1].macAddress",
        "multicast",
    ),
    (
        "mac-zero",
        {f"{IFACES}[1].macAddress": "00:00:00:00:00:00"},
        f"{IFACES}[1].macAddress",
        "all-zero",
    ),
    (
        "mac-masq-bridge",
        {f"{IFACES}[0].macAddress": "02:00:00:00:00:00"},
        f"{IFACES}[0].macAddress",
        "reserved for the masquerade bridge",
    ),
    (
        "mac-dup",
        {f"{IFACES}[0].macAddress": MAC1, f"{IFACES}[1].macAddress": MAC1.upper()},
        f"{IFACES}[1].macAddress",
        "duplicate MAC address 02:aa:00:00:00:01",
    ),
    (
        "model",
        {f"{IFACES}[0].model": "virtio-net"},
        f"{IFACES}[0].model",
        "unsupported model 'virtio-net'",
    ),
    (
        "port-missing",
        {f"{IFACES}[0].ports": [{"protocol": "TCP"}]},
        f"{IFACES}[0].ports[0].port",
        "missing",
    ),
    (
        "port-string",
        {f"{IFACES}[0].ports": [{"port": "80"}]},
        f"{IFACES}[0].ports[0].port",
        "must be an integer, not a string",
    ),
    (
        "port-bool",
        {f"{IFACES}[0].ports": [{"port": True}]},
        f"{IFACES}[0].ports[0].port",
        "must be an integer, not a boolean",
    ),
    (
        "port-float",
        {f"{IFACES}[0].ports": [{"port": 80.0}]},
        f"{IFACES}[0].ports[0].port",
        "integer",
    ),
    (
        "port-zero",
        {f"{IFACES}[0].ports": [{"port": 0}]},
        f"{IFACES}[0].ports[0].port",
        "out of range 1-65535",
    ),
    (
        "port-big",
        {f"{IFACES}[0].ports": [{"port": 65536}]},
        f"{IFACES}[0].ports[0].port",
        "out of range",
    ),
    (
        "protocol",
        {f"{IFACES}[0].ports": [{"port": 80, "protocol": "SCTP"}]},
        f"{IFACES}[0].ports[0].protocol",
        "TCP or UDP",
    ),
    (
        "port-dup",
        {f"{IFACES}[0].ports": [{"port": 80}, {"port": 80, "protocol": "tcp"}]},
        f"{IFACES}[0].ports[1].port",
        "duplicate port 80/TCP",
    ),
    (
        "port-name-invalid",
        {f"{IFACES}[0].ports": [{"port": 80, "name": "HTTP_1"}]},
        f"{IFACES}[0].ports[0].name",
        "invalid port name",
    ),
    (
        "port-name-digits",
        {f"{IFACES}[0].ports": [{"port": 80, "name": "8080"}]},
        f"{IFACES}[0].ports[0].name",
        "invalid port name",
    ),
    (
        "port-name-dup",
        {f"{IFACES}[0].ports": [{"port": 80, "name": "web"}, {"port": 81, "name": "web"}]},
        f"{IFACES}[0].ports[1].name",
        "duplicate port name",
    ),
    (
        "ports-on-bridge",
        {f"{IFACES}[1].ports": [{"port": 80}]},
        f"{IFACES}[1].ports",
        "only used by masquerade and passt, not bridge",
    ),
    (
        "pci-malformed",
        {f"{IFACES}[1].pciAddress": "81:01.0"},
        f"{IFACES}[1].pciAddress",
        "invalid PCI address",
    ),
    (
        "pci-function",
        {f"{IFACES}[1].pciAddress": "0000:81:01.8"},
        f"{IFACES}[1].pciAddress",
        "invalid PCI",
    ),
    (
        "pci-slot",
        {f"{IFACES}[1].pciAddress": "0000:81:20.0"},
        f"{IFACES}[1].pciAddress",
        "above 0x1f",
    ),
    (
        "pci-dup",
        {f"{IFACES}[0].pciAddress": "0000:01:01.0", f"{IFACES}[1].pciAddress": "0000:01:01.0"},
        f"{IFACES}[1].pciAddress",
        "duplicate PCI address",
    ),
    ("boot-zero", {f"{IFACES}[1].bootOrder": 0}, f"{IFACES}[1].bootOrder", "must be >= 1"),
    (
        "boot-string",
        {f"{IFACES}[1].bootOrder": "1"},
        f"{IFACES}[1].bootOrder",
        "must be an integer",
    ),
    (
        "boot-dup",
        {f"{IFACES}[0].bootOrder": 1, f"{IFACES}[1].bootOrder": 1},
        f"{IFACES}[1].bootOrder",
        "duplicate boot order 1",
    ),
    (
        "private-code-low",
        {f"{IFACES}[1].dhcpOptions": {"privateOptions": [{"option": 200, "value": "x"}]}},
        f"{IFACES}[1].dhcpOptions.privateOptions[0].option",
        "out of range 224-254",
    ),
    (
        "private-code-dup",
        {
            f"{IFACES}[1].dhcpOptions": {
                "privateOptions": [{"option": 240, "value": "a"}, {"option": 240, "value": "b"}]
            }
        },
        f"{IFACES}[1].dhcpOptions.privateOptions[1].option",
        "duplicate private option 240",
    ),
    (
        "private-value-long",
        {f"{IFACES}[1].dhcpOptions": {"privateOptions": [{"option": 240, "value": "x" * 256}]}},
        f"{IFACES}[1].dhcpOptions.privateOptions[0].value",
        "longer than 255 bytes",
    ),
    (
        "ntp-ipv6",
        {f"{IFACES}[1].dhcpOptions": {"ntpServers": ["fd00::1"]}},
        f"{IFACES}[1].dhcpOptions.ntpServers[0]",
        "not an IPv4 address",
    ),
    (
        "ntp-not-list",
        {f"{IFACES}[1].dhcpOptions": {"ntpServers": "1.2.3.4"}},
        f"{IFACES}[1].dhcpOptions.ntpServers",
        "must be a list",
    ),
    (
        "bootfile-int",
        {f"{IFACES}[1].dhcpOptions": {"bootFileName": 5}},
        f"{IFACES}[1].dhcpOptions.bootFileName",
        "must be a string",
    ),
    (
        "tftp-list",
        {f"{IFACES}[1].dhcpOptions": {"tftpServerName": ["a"]}},
        f"{IFACES}[1].dhcpOptions.tftpServerName",
        "must be a string, not a list",
    ),
    ("net-no-source", {f"{N}[1]": {"name": "red"}}, f"{N}[1]", "exactly one of"),
    ("net-two-sources", {f"{N}[1].pod": {}}, f"{N}[1]", "exactly one of"),
    ("net-pod-null", {f"{N}[0].pod": None}, f"{N}[0].pod", "must be a mapping, e.g. 'pod: {}'"),
    ("multus-no-name", {f"{N}[1].multus": {}}, f"{N}[1].multus.networkName", "missing"),
    (
        "multus-bad-name",
        {f"{N}[1].multus.networkName": "a/b/c"},
        f"{N}[1].multus.networkName",
        "expected [namespace/]name",
    ),
    (
        "two-pod-networks",
        {f"{N}[1]": {"name": "red", "pod": {}}},
        f"{N}[1].pod",
        "only one pod network",
    ),
    (
        "two-multus-defaults",
        {
            f"{N}[0]": {"name": "default", "multus": {"networkName": "a", "default": True}},
            f"{N}[1].multus.default": True,
        },
        f"{N}[1].multus.default",
        "only one Multus default",
    ),
    (
        "pod-and-multus-default",
        {f"{N}[1].multus.default": True},
        f"{N}[1].multus.default",
        "replaces the pod network",
    ),
    (
        "multus-default-not-bool",
        {f"{N}[1].multus.default": "yes"},
        f"{N}[1].multus.default",
        "must be true or false",
    ),
    (
        "masquerade-on-multus",
        {f"{IFACES}[1]": {"name": "red", "masquerade": {}}},
        f"{IFACES}[1].masquerade",
        "only allowed on the pod network",
    ),
    (
        "passt-on-multus",
        {f"{IFACES}[1]": {"name": "red", "passtBinding": {}}},
        f"{IFACES}[1].passtBinding",
        "only allowed on the pod network",
    ),
    (
        "absent-primary",
        {f"{IFACES}[0]": {"name": "default", "bridge": {}, "state": "absent"}},
        f"{IFACES}[0].state",
        "not allowed on the primary network",
    ),
    (
        "absent-managed-tap",
        {f"{IFACES}[1]": {"name": "red", "binding": {"name": "managed-tap"}, "state": "absent"}},
        f"{IFACES}[1].state",
        "only allowed with bridge binding, not managedTap",
    ),
    (
        "state-unknown",
        {f"{IFACES}[0].state": "sleeping"},
        f"{IFACES}[0].state",
        "up, down or absent",
    ),
    (
        "cidr-invalid",
        {f"{N}[0].pod.vmNetworkCIDR": "10.0.2/24x"},
        f"{N}[0].pod.vmNetworkCIDR",
        "invalid IPv4 CIDR",
    ),
    (
        "cidr-ipv6",
        {f"{N}[0].pod.vmNetworkCIDR": "fd00::/64"},
        f"{N}[0].pod.vmNetworkCIDR",
        "invalid IPv4 CIDR",
    ),
    (
        "cidr-host-bits",
        {f"{N}[0].pod.vmNetworkCIDR": "10.0.2.1/24"},
        f"{N}[0].pod.vmNetworkCIDR",
        "host bits set; did you mean 10.0.2.0/24?",
    ),
    (
        "cidr-no-prefix",
        {f"{N}[0].pod.vmNetworkCIDR": "10.0.2.0"},
        f"{N}[0].pod.vmNetworkCIDR",
        "no prefix length",
    ),
    (
        "cidr-31",
        {f"{N}[0].pod.vmNetworkCIDR": "10.0.2.0/31"},
        f"{N}[0].pod.vmNetworkCIDR",
        "prefix /31 is too long",
    ),
    (
        "cidr-loopback",
        {f"{N}[0].pod.vmNetworkCIDR": "127.0.0.0/24"},
        f"{N}[0].pod.vmNetworkCIDR",
        "loopback",
    ),
    (
        "cidr6-invalid",
        {f"{N}[0].pod.vmIPv6NetworkCIDR": "zz"},
        f"{N}[0].pod.vmIPv6NetworkCIDR",
        "invalid IPv6 CIDR",
    ),
    (
        "cidr6-127",
        {f"{N}[0].pod.vmIPv6NetworkCIDR": "fd10::/127"},
        f"{N}[0].pod.vmIPv6NetworkCIDR",
        "prefix /127 is too long",
    ),
    (
        "cidr-on-bridge",
        {
            f"{IFACES}[0]": {"name": "default", "bridge": {}},
            f"{N}[0].pod.vmNetworkCIDR": "10.1.0.0/24",
        },
        f"{N}[0].pod.vmNetworkCIDR",
        "only applies to masquerade, not bridge",
    ),
    ("cpu-zero", {"spec.domain.cpu": {"cores": 0}}, "spec.domain.cpu.cores", "must be >= 1"),
    (
        "cpu-too-many",
        {"spec.domain.cpu": {"sockets": 64, "cores": 64, "threads": 2}},
        "spec.domain.cpu",
        "more than 4096 vCPUs",
    ),
    (
        "memory-invalid",
        {"spec.domain.memory": {"guest": "lots"}},
        "spec.domain.memory.guest",
        "invalid quantity",
    ),
    (
        "multiqueue-string",
        {"spec.domain.devices.networkInterfaceMultiqueue": "yes"},
        "spec.domain.devices.networkInterfaceMultiqueue",
        "must be true or false",
    ),
    ("acpi-negative", {f"{IFACES}[0].acpiIndex": -1}, f"{IFACES}[0].acpiIndex", "must be >= 0"),
]


@pytest.mark.parametrize(
    ("changes", "field", "cause"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_bad_inline(changes: dict[str, object], field: str, cause: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse(mutate(changes))
    assert (info.value.field, cause in info.value.cause) == (field, True), str(info.value)
    assert str(info.value) == f"{field}: {info.value.cause}"


def test_base_of_inline_cases_is_valid() -> None:
    vmi = parse(mutate({}))
    assert [i.binding for i in vmi.interfaces] == [Binding.MASQUERADE, Binding.BRIDGE]


def test_catalogue_size() -> None:
    assert len(CASES) + len(BAD) >= 40
    assert len({c[0] for c in CASES}) == len(CASES)


# ---------------------------------------------------------------- files and text


def test_load_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load(str(tmp_path / "nope.yaml"))
    assert info.value.field == "--vmi"
    assert (
        info.value.cause == f"{tmp_path / 'nope.yaml'}: {__import__('os').strerror(errno.ENOENT)}"
    )


def test_load_directory_and_binary(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^--vmi: .*[Ii]s a directory"):
        load(str(tmp_path))
    binary = tmp_path / "vm.yaml"
    binary.write_bytes(b"\xff\xfe\x00kind")
    with pytest.raises(ConfigError, match=r"^--vmi: .*cannot read as UTF-8 text"):
        load(str(binary))


@pytest.mark.parametrize("text", ["", "   \n", "# only a comment\n", "null"])
def test_text_without_document(text: str) -> None:
    with pytest.raises(ConfigError, match=r"^x.yaml: no VirtualMachine"):
        parse_text(text, source="x.yaml")


def test_parse_rejects_non_text_and_non_mapping() -> None:
    with pytest.raises(ConfigError, match=r"^<manifest>: a manifest must be text"):
        parse_text(b"kind: VirtualMachine")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"^in.json: a manifest must be a mapping, not a list"):
        parse_text("[1, 2]", source="in.json")


def test_deep_nesting_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"^<manifest>: "):
        parse_text("[" * 100_000)
    with pytest.raises(ConfigError):
        parse_text("a: " + "[" * 100_000)


def test_yaml_timestamp_in_annotation() -> None:
    doc = """
apiVersion: kubevirt.io/v1
kind: VirtualMachineInstance
metadata: {name: t, annotations: {when: 2024-01-01}}
spec: {domain: {devices: {}}}
"""
    with pytest.raises(
        ConfigError, match=r"^metadata\.annotations\.when: must be a string, not date"
    ):
        parse_text(doc)


def test_values_are_typed_and_hashable() -> None:
    vmi = good("vm_masquerade_two_multus.yaml")
    assert isinstance(vmi.interfaces[1].mac, MacAddress)
    assert isinstance(vmi.interfaces[1].dhcp_options.ntp_servers[0], IPv4Address)  # type: ignore[union-attr]
    assert len({vmi, good("vm_masquerade_two_multus.yaml")}) == 1
    with pytest.raises(AttributeError):
        vmi.name = "other"  # type: ignore[misc]


# ---------------------------------------------------------------- fuzzing

KEYS = [
    "apiVersion",
    "kind",
    "metadata",
    "name",
    "namespace",
    "spec",
    "template",
    "domain",
    "devices",
    "interfaces",
    "networks",
    "pod",
    "multus",
    "networkName",
    "default",
    "bridge",
    "masquerade",
    "passtBinding",
    "binding",
    "ports",
    "port",
    "protocol",
    "macAddress",
    "pciAddress",
    "bootOrder",
    "dhcpOptions",
    "privateOptions",
    "option",
    "value",
    "ntpServers",
    "state",
    "vmNetworkCIDR",
    "vmIPv6NetworkCIDR",
    "cpu",
    "cores",
    "memory",
    "guest",
    "annotations",
    "model",
    "autoattachPodInterface",
]
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True),
    st.text(max_size=12),
    st.sampled_from(
        [
            "default",
            "red",
            "kubevirt.io/v1",
            "VirtualMachine",
            "VirtualMachineInstance",
            "02:00:00:00:00:00",
            "10.0.2.0/24",
            "0000:81:01.0",
            "TCP",
            "absent",
            "",
        ]
    ),
)
JSONISH = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(KEYS) | st.text(max_size=5) | st.integers(), inner, max_size=5
        )
    ),
    max_leaves=30,
)


def _paths(obj: object, prefix: str = "") -> list[str]:
    out = [prefix] if prefix else []
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _paths(v, f"{prefix}.{k}" if prefix else k)
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += _paths(v, f"{prefix}[{i}]")
    return out


BASE_PATHS = _paths(BASE)


def _parse_or_config_error(obj: object) -> None:
    try:
        vmi = parse(obj)
    except ConfigError as err:
        assert err.field and "\n" not in err.field
        return
    assert parse(json.loads(json.dumps(to_json(vmi)))) == vmi


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(JSONISH)
def test_fuzz_random_objects(obj: object) -> None:
    _parse_or_config_error(obj)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(BASE_PATHS), JSONISH), min_size=1, max_size=3))
def test_fuzz_mutated_manifest(changes: list[tuple[str, object]]) -> None:
    try:
        doc = mutate(dict(changes))
    except (KeyError, IndexError, TypeError):
        return
    _parse_or_config_error(doc)


@settings(max_examples=300, deadline=None)
@given(
    st.text(max_size=200)
    | st.sampled_from(
        [
            "{",
            "[",
            "a: &x [*x]",
            "!!binary x",
            "a: !!set {b}",
            "--- !!python/object:os.system x",
            "\ufeff{}",
        ]
    )
)
def test_fuzz_random_text(text: str) -> None:
    with contextlib.suppress(ConfigError):
        parse_text(text)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(GOOD), st.integers(0, 10_000), st.text(max_size=3))
def test_fuzz_corrupted_good_files(path: Path, at: int, junk: str) -> None:
    text = path.read_text()
    at %= len(text) + 1
    try:
        vmi = parse_text(text[:at] + junk + text[at + len(junk) :])
    except ConfigError:
        return
    assert parse(to_json(vmi)) == vmi


NAMES = st.from_regex(r"[a-z][a-z0-9-]{0,8}[a-z0-9]", fullmatch=True)
MACS = (
    st.binary(min_size=6, max_size=6)
    .map(MacAddress.random_local)
    .filter(lambda mac: mac != MASQUERADE_BRIDGE_MAC)
)  # reserved for the masquerade bridge
PORTS = st.lists(
    st.builds(
        Port,
        st.integers(1, 65535),
        st.sampled_from(["TCP", "UDP"]),
        st.none() | st.from_regex(r"[a-z]{1,15}", fullmatch=True),
    ),
    max_size=3,
    unique_by=(lambda p: (p.port, p.protocol), lambda p: p.name or id(p)),
).map(tuple)
DHCP = st.none() | st.builds(
    DhcpOptions,
    st.none() | st.text("abc./", min_size=1, max_size=20),
    st.none() | NAMES,
    st.lists(st.ip_addresses(v=4), max_size=2).map(tuple),
    st.lists(st.integers(224, 254), unique=True, max_size=2).map(
        lambda c: tuple((x, "v") for x in c)
    ),
)


@st.composite
def vmis(draw: st.DrawFn) -> Vmi:
    names = draw(st.lists(NAMES, min_size=1, max_size=4, unique=True))
    primary = draw(st.sampled_from(["pod", "multus", "none"]))
    ifaces, nets = [], []
    macs = draw(
        st.lists(
            st.none() | MACS,
            min_size=len(names),
            max_size=len(names),
            unique_by=lambda m: m or object(),
        )
    )
    for i, name in enumerate(names):
        kind = "pod" if i == 0 and primary == "pod" else "multus"
        choices = [Binding.BRIDGE, Binding.MANAGED_TAP] + (
            [Binding.MASQUERADE, Binding.PASST] if kind == "pod" else []
        )
        binding = draw(st.sampled_from(choices))
        is_primary = i == 0 and primary != "none"
        nets.append(
            Network(
                name,
                kind,
                None if kind == "pod" else draw(NAMES),
                default=(kind == "multus" and is_primary),
                vm_cidr=draw(st.none() | st.just(IPv4Network("10.9.0.0/28")))
                if binding is Binding.MASQUERADE
                else None,
            )
        )
        states = [None, "up", "down"] + (
            ["absent"] if binding is Binding.BRIDGE and not is_primary else []
        )
        ifaces.append(
            Interface(
                name,
                binding,
                macs[i],
                draw(st.none() | st.sampled_from(["virtio", "e1000"])),
                draw(PORTS) if binding in (Binding.MASQUERADE, Binding.PASST) else (),
                draw(st.none() | st.just(PciAddress(0, 1, i + 1, 0))),
                draw(st.none() | st.just(i + 1)),
                draw(DHCP),
                draw(st.sampled_from(states)),
                "managed-tap" if binding is Binding.MANAGED_TAP else None,
            )
        )
    return Vmi(
        draw(st.sampled_from(["VirtualMachine", "VirtualMachineInstance"])),
        draw(NAMES),
        interfaces=tuple(ifaces),
        networks=tuple(draw(st.permutations(nets))),
        cpus=draw(st.integers(1, 64)),
        memory=draw(st.none() | st.just("1Gi")),
    )


@settings(max_examples=200, deadline=None)
@given(vmis())
def test_round_trip_generated(vmi: Vmi) -> None:
    assert parse(json.loads(json.dumps(to_json(vmi)))) == vmi
