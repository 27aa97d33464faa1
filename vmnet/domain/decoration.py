"""Decorating a domain: put vmnet's interfaces into an existing `<domain>`.

Interfaces are matched by alias `ua-<name>`; no other interface changes, and
outside `<devices>` only `<memoryBacking>` does, for vhost-user.

On a match, owned children are replaced, set-if-given ones replaced only when
set, the rest kept in place; an added child goes where
KubeVirt's order puts it, so decorating twice equals decorating once.
"""

from __future__ import annotations

from collections.abc import Sequence

from lxml import etree

from vmnet.core.errors import ConfigError
from vmnet.domain.interface import DomainInterface, element, interface_children, interface_element

_ORDER: tuple[str, ...] = ("address", "source", "target", "model", "mac", "mtu", "bandwidth")
_ORDER += ("boot", "link", "filterref", "alias", "driver", "rom", "acpi", "backend", "portForward")
_OWNED = frozenset({"mac", "target", "backend", "portForward"})
_IF_SET = frozenset({"address", "mtu", "boot", "link", "driver"})


def decorate(domain: etree._Element, ifaces: Sequence[DomainInterface]) -> None:
    """Put each interface into `domain`, updating the one with its alias in place.

    Args:
        domain: a `<domain>` root, changed in place.
        ifaces: the interfaces phase 2 wants; aliases must be unique.

    Raises:
        ConfigError: wrong root, duplicate aliases in `ifaces` or in the domain.
    """
    if not isinstance(domain, etree._Element) or domain.tag != "domain":
        raise ConfigError("--domain", "the root element is not <domain>")
    if not all(isinstance(i, DomainInterface) for i in ifaces):
        raise ConfigError("interfaces", "expected DomainInterface values")
    aliases = [i.alias for i in ifaces]
    if len(set(aliases)) != len(aliases):
        raise ConfigError("interfaces", "two interfaces have the same name")
    devices = domain.find("devices")
    if devices is None:
        devices = etree.SubElement(domain, "devices")
    existing = _by_alias(devices)
    for iface in ifaces:
        current = existing.get("ua-" + iface.alias)
        if current is None:
            _append_interface(devices, interface_element(iface))
        else:
            _update(current, iface)
        if iface.type == "vhostuser":
            _ensure_shared_memory(domain)


def _by_alias(devices: etree._Element) -> dict[str, etree._Element]:
    found: dict[str, etree._Element] = {}
    for el in devices.findall("interface"):
        alias = el.find("alias")
        name = alias.get("name") if alias is not None else None
        if name in found:
            raise ConfigError("--domain", f"two <interface> elements have alias {name}")
        if name:
            found[name] = el
    return found


def _append_interface(devices: etree._Element, el: etree._Element) -> None:
    last = devices.findall("interface")
    if last:
        last[-1].addnext(el)
    else:
        devices.append(el)


def _update(current: etree._Element, iface: DomainInterface) -> None:
    current.set("type", iface.type)
    owned = _OWNED | {"source"} if iface.is_passt else _OWNED
    for child in current.findall("*"):
        if child.tag in owned or (
            iface.boot_order and child.tag == "rom" and child.get("enabled") == "no"
        ):
            current.remove(child)
    for want in interface_children(iface):
        have = current.find(want.tag)
        if have is not None and want.tag in _IF_SET:
            current.replace(have, want)
        elif want.tag in owned or (have is None and _absent_ok(current, want.tag)):
            _insert(current, want)


def _absent_ok(current: etree._Element, tag: str) -> bool:
    return tag != "rom" or current.find("boot") is None


def _insert(parent: etree._Element, child: etree._Element) -> None:
    rank = _ORDER.index(child.tag)
    position = 0
    for index, other in enumerate(parent):
        if isinstance(other.tag, str) and other.tag in _ORDER and _ORDER.index(other.tag) <= rank:
            position = index + 1
    parent.insert(position, child)


def _ensure_shared_memory(domain: etree._Element) -> None:
    backing = domain.find("memoryBacking")
    if backing is None:
        backing = element("memoryBacking")
        anchor = domain.find("os")
        domain.insert(domain.index(anchor) if anchor is not None else len(domain), backing)
    if backing.find("source") is None:
        backing.insert(0, element("source", type="memfd"))
    access = backing.find("access")
    if access is None:
        access = etree.SubElement(backing, "access")
    access.set("mode", "shared")
