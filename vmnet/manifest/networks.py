"""`networks[]`: pod and Multus network sources.

Each network has exactly one source, `pod: {}` or `multus: {networkName}`,
and it must be a mapping.

At most one pod network and at most one Multus default network, and not
both: a Multus default network replaces the pod network (KubeVirt).

`vmNetworkCIDR`/`vmIPv6NetworkCIDR` are network prefixes without host bits,
at most /30 and /126, so a gateway and VM pair fits.
"""

from __future__ import annotations

from ipaddress import IPv4Network, IPv6Network
from typing import TypeVar

from vmnet.manifest.nodes import SUBDOMAIN, Node, dns_label
from vmnet.manifest.vmi import Network

_Net = TypeVar("_Net", IPv4Network, IPv6Network)

_NET_FIELDS = frozenset({"name", "pod", "multus"})
_POD_FIELDS = frozenset({"vmNetworkCIDR", "vmIPv6NetworkCIDR"})
_MULTUS_FIELDS = frozenset({"networkName", "default"})


def parse_networks(nodes: list[Node]) -> tuple[Network, ...]:
    networks = tuple(_parse_network(n) for n in nodes)
    first: dict[str, int] = {}
    for i, (net, node) in enumerate(zip(networks, nodes, strict=False)):
        if net.name in first:
            node.child("name").fail(
                f"duplicate network name {net.name!r} (also networks[{first[net.name]}])"
            )
        first[net.name] = i
    pods = [node for net, node in zip(networks, nodes, strict=False) if net.kind == "pod"]
    defaults = [node for net, node in zip(networks, nodes, strict=False) if net.default]
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


def _parse_network(node: Node) -> Network:
    fields = node.mapping(_NET_FIELDS)
    name = dns_label(node.child("name"), "network name")
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


def _nad_name(node: Node) -> str:
    text = node.text() or ""
    parts = text.split("/")
    if len(parts) > 2 or not all(len(p) <= 253 and SUBDOMAIN.fullmatch(p) for p in parts):
        node.fail(f"invalid NetworkAttachmentDefinition {text!r}: expected [namespace/]name")
    return text


def _cidr(node: Node, cls: type[_Net], max_prefix: int) -> _Net | None:
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
