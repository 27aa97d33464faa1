"""The top of a manifest: kind, apiVersion, metadata, spec, CPUs and memory.

A VirtualMachine is read through `spec.template`, and its annotations are the
template's: KubeVirt builds the VMI from the template.

No interfaces and no networks (with `autoattachPodInterface` unset or true)
give KubeVirt's default: one masquerade interface on a pod network, both
named `default`.

Every network needs an interface of the same name and vice versa.
"""

from __future__ import annotations

import re
from dataclasses import replace

from vmnet.core.errors import ConfigError
from vmnet.manifest.interfaces import parse_interfaces
from vmnet.manifest.networks import parse_networks
from vmnet.manifest.nodes import SUBDOMAIN, Node, close_matches, dns_label, type_name
from vmnet.manifest.vmi import KINDS, MAX_CPUS, Annotations, Binding, Interface, Network, Vmi

_API_VERSION = re.compile(r"kubevirt\.io/v[0-9]+((alpha|beta)[0-9]+)?")
_QUANTITY = re.compile(r"[0-9]+(\.[0-9]+)?([KMGTPE]i|[mkMGTPE]|[eE][0-9]+)?")


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
    root = Node(obj, "")
    if not isinstance(obj, dict):
        raise ConfigError(source, f"a manifest must be a mapping, not {type_name(obj)}")
    try:
        return _parse_root(root)
    except RecursionError as err:
        raise ConfigError(source, "nested too deeply") from err


def _parse_root(root: Node) -> Vmi:
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
        _no_misspelling(spec, _VM_SPEC, ("template",))
        template = spec.require("template")
        template.mapping()
        spec, annotations = (
            template.require("spec"),
            template.child("metadata").child("annotations"),
        )
        spec.mapping()
    else:
        annotations = meta.child("annotations")
    _no_misspelling(spec, _VMI_SPEC, ("domain", "networks", "hostname", "subdomain"))
    head = Vmi(
        kind=kind,
        name=meta.require("name").name(SUBDOMAIN, 63, "name"),
        namespace=_optional_label(meta.child("namespace"), "namespace") or "default",
        uid=meta.child("uid").text(),
        annotations=_annotations(annotations),
        hostname=_optional_label(spec.child("hostname"), "hostname"),
        subdomain=_optional_label(spec.child("subdomain"), "subdomain"),
    )
    return _parse_spec(spec, head)


# KubeVirt's VirtualMachineSpec and VirtualMachineInstanceSpec fields (kubevirt.io/api
# core/v1/types.go). A field that is not one of them is left alone (a newer KubeVirt
# may have it), unless it is a near miss of a field vmnet reads: `netwroks:` would
# otherwise read as "no networks" and fail far from the typo.
_VM_SPEC = frozenset(
    [
        "running",
        "runStrategy",
        "template",
        "instancetype",
        "preference",
        "dataVolumeTemplates",
        "updateVolumesStrategy",
    ]
)
_VMI_SPEC = frozenset(
    [
        "priorityClassName",
        "domain",
        "nodeSelector",
        "affinity",
        "schedulerName",
        "tolerations",
        "topologySpreadConstraints",
        "evictionStrategy",
        "startStrategy",
        "terminationGracePeriodSeconds",
        "volumes",
        "livenessProbe",
        "readinessProbe",
        "hostname",
        "subdomain",
        "networks",
        "dnsPolicy",
        "dnsConfig",
        "accessCredentials",
        "architecture",
        "resourceClaims",
    ]
)


def _no_misspelling(spec: Node, known: frozenset[str], read: tuple[str, ...]) -> None:
    for key in spec.mapping():
        if key in known:
            continue
        near = close_matches(key, read, n=1, cutoff=0.75)
        if near and spec.child(near[0]).absent:
            spec.child(key).fail(f"unknown field; did you mean {near[0]!r}?")


def _optional_label(node: Node, what: str) -> str | None:
    return None if node.absent else dns_label(node, what)


def _annotations(node: Node) -> Annotations:
    pairs = []
    for key in node.mapping():
        value = node.child(key)
        if not isinstance(value.value, str):
            value.fail(f"must be a string, not {type_name(value.value)} (quote it)")
        pairs.append((key, value.value))
    return Annotations(tuple(sorted(pairs)))


def _parse_spec(spec: Node, head: Vmi) -> Vmi:
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


def _parse_pairs(spec: Node, devices: Node) -> tuple[tuple[Interface, ...], tuple[Network, ...]]:
    net_nodes = spec.child("networks").elements()
    networks = parse_networks(net_nodes)
    iface_nodes = devices.child("interfaces").elements()
    autoattach = devices.child("autoattachPodInterface")
    attach = autoattach.absent or autoattach.flag()
    if not iface_nodes and not networks and attach:
        return (Interface("default", Binding.MASQUERADE),), (Network("default", "pod"),)
    refs = {net.name: (net, node) for net, node in zip(networks, net_nodes, strict=False)}
    interfaces = parse_interfaces(iface_nodes, refs)
    used = {i.name for i in interfaces}
    for net, node in zip(networks, net_nodes, strict=False):
        if net.name not in used:
            node.child("name").fail(f"no interface named {net.name!r}")
    return interfaces, networks


def _memory(domain: Node) -> str | None:
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
