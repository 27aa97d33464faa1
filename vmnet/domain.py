"""Libvirt domain XML for vmnet interfaces: build, decorate, parse and print.

Rules:
1. Pure lxml. No file, socket or libvirt I/O here; the CLI reads and writes.
2. An interface is found by its user alias `ua-<name>` (KubeVirt
   `api/schema.go`). No other interface is touched; outside `<devices>` only
   `<memoryBacking>` changes, when a vhost-user interface needs shared memory.
3. On a matched interface vmnet owns the `type` attribute, `<mac>`, `<target>`,
   `<backend>`, `<portForward>` and, for passt, `<source>`: they are replaced.
   `<address>`, `<mtu>`, `<boot>`, `<link>` and `<driver>` are replaced only when
   the spec sets them. `<model>` and an empty ethernet `<source>` are added only
   if absent, `<rom enabled='no'>` only if there is no `<boot>`. Any other child
   is kept where it is.
4. A child that vmnet adds goes where KubeVirt's struct order puts it (§7.1 of
   the reference), so decorating twice gives the same tree as decorating once.
5. Domain XML is untrusted input: no DTD, no entity expansion, no network
   access (XXE and "billion laughs", OWASP XML External Entity Prevention).
"""

from __future__ import annotations

import re
import uuid as _uuid
import xml.etree.ElementTree as _stdlib_et
from collections.abc import Sequence
from copy import deepcopy
from dataclasses import dataclass

from lxml import etree

from vmnet.addr import MacAddress
from vmnet.errors import ConfigError
from vmnet.manifest import PciAddress

TYPES = ("ethernet", "user", "vhostuser")
VIRTIO_MODELS = ("virtio", "virtio-transitional", "virtio-non-transitional")
ISTIO_RESERVED_PORTS = (15000, 15001, 15004, 15006, 15008, 15009, 15020, 15021, 15053, 15090)
MAX_QUEUES = 256
_ORDER: tuple[str, ...] = ("address", "source", "target", "model", "mac", "mtu", "bandwidth")
_ORDER += ("boot", "link", "filterref", "alias", "driver", "rom", "acpi", "backend", "portForward")
_OWNED = frozenset({"mac", "target", "backend", "portForward"})
_IF_SET = frozenset({"address", "mtu", "boot", "link", "driver"})
_ALIAS_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_MODEL_RE = re.compile(r"^[A-Za-z0-9_-]+$")
_IFNAME_RE = re.compile(r"^[^/\s:]{1,15}$")
_DOMNAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+:-]{0,63}$")
_ABSPATH_RE = re.compile(r"^/[^\x00-\x1f]*$")


@dataclass(frozen=True, slots=True)
class PortForward:
    """One passt `<portForward>`: ranges are (start, end or None, exclude)."""

    proto: str
    ranges: tuple[tuple[int, int | None, bool], ...] = ()

    def __post_init__(self) -> None:
        if self.proto not in ("tcp", "udp"):
            raise ConfigError("portForward", f"protocol {self.proto!r} is not tcp or udp")
        for rng in self.ranges:
            if not isinstance(rng, tuple) or len(rng) != 3:
                raise ConfigError("portForward", f"{rng!r} is not (start, end, exclude)")
            _check_range(rng[0], rng[1])


@dataclass(frozen=True, slots=True)
class DomainInterface:
    """What phase 2 wants in one `<interface>`; see docs/domain.md."""

    alias: str
    type: str
    mac: MacAddress
    model: str = "virtio"
    target: str | None = None
    mtu: int | None = None
    boot_order: int | None = None
    pci_address: PciAddress | None = None
    link_down: bool = False
    queues: int | None = None
    source_dev: str | None = None
    port_forwards: tuple[PortForward, ...] = ()
    passt_log: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.alias, str) or not _ALIAS_RE.match(self.alias):
            raise ConfigError("interface", f"name {self.alias!r} is not a valid alias")
        for problem in _interface_problems(self):
            raise ConfigError(f"interface {self.alias}", problem)

    @property
    def is_passt(self) -> bool:
        return self.type != "ethernet"


def _int_in(value: object, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _check_range(start: object, end: object) -> None:
    for port in (start, end):
        if port is not None and not _int_in(port, 1, 65535):
            raise ConfigError("portForward", f"port {port!r} is outside 1..65535")
    if start is None or (end is not None and end < start):  # type: ignore[operator]
        raise ConfigError("portForward", f"range {start}-{end} ends before it starts")


def _matches(pattern: re.Pattern[str], value: object, optional: bool = True) -> bool:
    return (optional and value is None) or (isinstance(value, str) and bool(pattern.match(value)))


def _interface_problems(i: DomainInterface) -> list[str]:
    multiqueue = _int_in(i.queues, 2, MAX_QUEUES)
    forwards = isinstance(i.port_forwards, tuple) and all(
        isinstance(p, PortForward) for p in i.port_forwards
    )
    checks = [
        (i.type in TYPES, f"type {i.type!r} is not one of {', '.join(TYPES)}"),
        (isinstance(i.mac, MacAddress) and not i.mac.is_multicast, f"MAC {i.mac} is not unicast"),
        (_matches(_MODEL_RE, i.model, optional=False), f"model {i.model!r}"),
        (_matches(_IFNAME_RE, i.target), f"tap name {i.target!r}"),
        (_matches(_IFNAME_RE, i.source_dev), f"source device {i.source_dev!r}"),
        (_matches(_ABSPATH_RE, i.passt_log), f"passt log {i.passt_log!r} is not absolute"),
        (i.mtu is None or _int_in(i.mtu, 68, 65535), f"MTU {i.mtu!r} is outside 68..65535"),
        (i.boot_order is None or _int_in(i.boot_order, 1, 65535), f"boot order {i.boot_order!r}"),
        (i.queues is None or _int_in(i.queues, 1, MAX_QUEUES), f"queues {i.queues!r} not 1..256"),
        (not multiqueue or i.model in VIRTIO_MODELS, "queues need a virtio model"),
        (not multiqueue or i.type != "user", "passt 'user' has a single queue"),
        (forwards, "port forwards are not a tuple of PortForward"),
        (
            i.is_passt or not (i.source_dev or i.port_forwards or i.passt_log),
            "source/portForward/log are passt-only",
        ),
        (not i.is_passt or i.target is None, "a passt interface has no tap target"),
        (i.pci_address is None or isinstance(i.pci_address, PciAddress), "bad PCI address"),
    ]
    return [problem for ok, problem in checks if not ok]


def passt_port_forwards(
    ports: Sequence[tuple[str, int | tuple[int, int]]], istio: bool = False
) -> tuple[PortForward, ...]:
    """KubeVirt's passt port rules (`converter/network/passt.go`, reference §7.3).

    Args:
        ports: (protocol, port or (start, end)) from the manifest; protocol
            "" or TCP means tcp, UDP means udp, SCTP is skipped as KubeVirt does.
        istio: start TCP with excludes for the Istio reserved ports.

    Returns:
        Bare tcp and udp forwards (forward all) if no TCP or UDP range results,
        otherwise one tcp element then one udp element, each only if non-empty.
        With Istio and no ports that is the TCP excludes alone: no UDP (quirk).

    Raises:
        ConfigError: a port outside 1..65535 or an unknown protocol.
    """
    found: dict[str, list[tuple[int, int | None, bool]]] = {"tcp": [], "udp": []}
    if istio:
        found["tcp"] = [(port, None, True) for port in ISTIO_RESERVED_PORTS]
    for proto, port in ports:
        name = str(proto).lower() or "tcp"
        if name not in ("tcp", "udp", "sctp"):
            raise ConfigError("ports", f"protocol {proto!r} is not TCP, UDP or SCTP")
        start, end = port if isinstance(port, tuple) and len(port) == 2 else (port, None)
        _check_range(start, end)
        if name != "sctp":
            found[name].append((start, end, False))
    if not found["tcp"] and not found["udp"]:
        return (PortForward("tcp"), PortForward("udp"))
    return tuple(PortForward(n, tuple(r)) for n, r in found.items() if r)


def _el(tag: str, **attrs: str) -> etree._Element:
    return etree.Element(tag, attrs)


def _model(model: str) -> str:
    return "virtio-non-transitional" if model == "virtio" else model


def interface_element(iface: DomainInterface) -> etree._Element:
    """A new `<interface>` with its children in KubeVirt's order (rule 4)."""
    el = _el("interface", type=iface.type)
    el.extend(_children(iface))
    return el


def _children(i: DomainInterface) -> list[etree._Element]:
    out: list[etree._Element] = []
    if i.pci_address is not None:
        out.append(_pci_element(i.pci_address))
    out.append(_el("source", dev=i.source_dev) if i.source_dev else _el("source"))
    if i.target is not None:
        out.append(_el("target", dev=i.target, managed="no"))
    out += [_el("model", type=_model(i.model)), _el("mac", address=str(i.mac))]
    if i.mtu is not None:
        out.append(_el("mtu", size=str(i.mtu)))
    if i.boot_order is not None:
        out.append(_el("boot", order=str(i.boot_order)))
    if i.link_down:
        out.append(_el("link", state="down"))
    out.append(_el("alias", name="ua-" + i.alias))
    if _int_in(i.queues, 2, MAX_QUEUES):
        extra = {"name": "vhost"} if i.type == "ethernet" else {}
        out.append(_el("driver", **extra, queues=str(i.queues)))
    if i.boot_order is None and i.type == "ethernet":
        out.append(_el("rom", enabled="no"))
    if i.is_passt:
        log = {"logFile": i.passt_log} if i.passt_log else {}
        out.append(_el("backend", type="passt", **log))
    for fwd in i.port_forwards:
        out.append(_port_forward(fwd))
    return out


def _pci_element(p: PciAddress) -> etree._Element:
    return _el(
        "address",
        type="pci",
        domain=f"{p.domain:#06x}",
        bus=f"{p.bus:#04x}",
        slot=f"{p.slot:#04x}",
        function=f"{p.function:#x}",
    )


def _port_forward(fwd: PortForward) -> etree._Element:
    el = _el("portForward", proto=fwd.proto)
    for start, end, exclude in fwd.ranges:
        rng = etree.SubElement(el, "range", start=str(start))
        if end is not None:
            rng.set("end", str(end))
        if exclude:
            rng.set("exclude", "yes")
    return el


def decorate(domain: etree._Element, ifaces: Sequence[DomainInterface]) -> None:
    """Put each interface into `domain`, updating the one with its alias in place.

    Args:
        domain: a `<domain>` root, changed in place (rules 2-4).
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
    for want in _children(iface):
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
        backing = _el("memoryBacking")
        anchor = domain.find("os")
        domain.insert(domain.index(anchor) if anchor is not None else len(domain), backing)
    if backing.find("source") is None:
        backing.insert(0, _el("source", type="memfd"))
    access = backing.find("access")
    if access is None:
        access = etree.SubElement(backing, "access")
    access.set("mode", "shared")


def skeleton(
    name: str,
    ifaces: Sequence[DomainInterface],
    *,
    memory_mib: int = 256,
    vcpus: int = 1,
    kernel: str | None = None,
    initrd: str | None = None,
    cmdline: str | None = None,
    emulator: str | None = None,
    serial_log: str | None = None,
    uuid: str | None = None,
) -> etree._Element:
    """A minimal bootable `<domain type='qemu'>` (TCG, q35) holding `ifaces`.

    More than five parameters on purpose: the keyword-only options mirror the
    libvirt elements one to one, and a config object would only rename them.

    Raises:
        ConfigError: a bad name, size, UUID or a relative path.
    """
    _check_skeleton(name, memory_mib, vcpus, uuid)
    paths = {"kernel": kernel, "initrd": initrd, "emulator": emulator, "serial": serial_log}
    for field, path in paths.items():
        if not _matches(_ABSPATH_RE, path):
            raise ConfigError(field, f"{path!r} is not an absolute path")
    dom = _el("domain", type="qemu")
    _texts(dom, name=name, uuid=uuid and str(_uuid.UUID(uuid)))
    etree.SubElement(dom, "memory", unit="MiB").text = str(memory_mib)
    _texts(dom, vcpu=str(vcpus))
    os_el = etree.SubElement(dom, "os")
    etree.SubElement(os_el, "type", arch="x86_64", machine="q35").text = "hvm"
    _texts(os_el, kernel=kernel, initrd=initrd, cmdline=cmdline)
    etree.SubElement(etree.SubElement(dom, "features"), "acpi")
    devices = etree.SubElement(dom, "devices")
    _texts(devices, emulator=emulator)
    decorate(dom, ifaces)
    if serial_log is not None:
        serial = etree.SubElement(devices, "serial", type="file")
        serial.extend([_el("source", path=serial_log), _el("target", port="0")])
    etree.SubElement(devices, "memballoon", model="none")
    return dom


def _texts(parent: etree._Element, **texts: str | None) -> None:
    for tag, text in texts.items():
        if text is not None:
            etree.SubElement(parent, tag).text = text


def _check_skeleton(name: str, memory_mib: int, vcpus: int, uuid: str | None) -> None:
    if not _matches(_DOMNAME_RE, name, optional=False):
        raise ConfigError("name", f"{name!r} is not a valid domain name")
    if not _int_in(memory_mib, 16, 1 << 24):
        raise ConfigError("memory", f"{memory_mib!r} MiB is outside 16 MiB..16 TiB")
    if not _int_in(vcpus, 1, 255):
        raise ConfigError("vcpus", f"{vcpus!r} is outside 1..255")
    try:
        _uuid.UUID(uuid) if uuid is not None else None
    except (ValueError, TypeError, AttributeError):
        raise ConfigError("uuid", f"{uuid!r} is not a UUID") from None


def parse_domain(text: bytes | str) -> etree._Element:
    """Parse untrusted domain XML (rule 5).

    Raises:
        ConfigError: ("--domain", cause) for bad XML, a DOCTYPE or a root that
            is not `<domain>`.
    """
    if isinstance(text, str):
        text = text.encode("utf-8")
    if not isinstance(text, bytes):
        raise ConfigError("--domain", f"expected XML text, got {type(text).__name__}")
    parser = etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        remove_blank_text=True,
        huge_tree=False,
    )
    try:
        root = etree.fromstring(text, parser)
    except (etree.XMLSyntaxError, ValueError) as err:
        raise ConfigError("--domain", f"not well-formed XML: {err}") from None
    if root.getroottree().docinfo.internalDTD is not None:
        raise ConfigError("--domain", "a DOCTYPE is not allowed (entities are never expanded)")
    if root.tag != "domain":
        raise ConfigError("--domain", f"the root element is <{root.tag}>, not <domain>")
    return root


def to_bytes(domain: etree._Element) -> bytes:
    """Pretty UTF-8 XML without a declaration; the input is not changed."""
    copy = deepcopy(domain)
    etree.indent(copy, space="  ")
    return etree.tostring(copy, pretty_print=True, encoding="utf-8")


def canonical(xml: etree._Element | bytes | str) -> str:
    """C14N 2.0 with whitespace-only text dropped: the form golden tests compare."""
    data = etree.tostring(xml) if isinstance(xml, etree._Element) else xml
    return _stdlib_et.canonicalize(data, strip_text=True)
