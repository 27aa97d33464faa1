"""`DomainInterface`, the passt port rules, and a fresh `<interface>` element.

A `DomainInterface` is valid or cannot be built: every field is checked in
`__post_init__` and a problem is a `ConfigError` naming the interface.

Children of a new `<interface>` come in KubeVirt's struct order; passt gets
`<backend type='passt'>` and no tap target.

Port rules follow KubeVirt `converter/network/passt.go` (docs/kubevirt.md, passt binding).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from lxml import etree

from vmnet.core.addr import MacAddress
from vmnet.core.errors import ConfigError
from vmnet.manifest import PciAddress

TYPES = ("ethernet", "user", "vhostuser")
VIRTIO_MODELS = ("virtio", "virtio-transitional", "virtio-non-transitional")
ISTIO_RESERVED_PORTS = (15000, 15001, 15004, 15006, 15008, 15009, 15020, 15021, 15053, 15090)
MAX_QUEUES = 256
_ALIAS_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_MODEL_RE = re.compile(r"^[A-Za-z0-9_-]+$")
_IFNAME_RE = re.compile(r"^[^/\s:]{1,15}$")
ABSPATH_RE = re.compile(r"^/[^\x00-\x1f]*$")


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


def int_in(value: object, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _check_range(start: object, end: object) -> None:
    for port in (start, end):
        if port is not None and not int_in(port, 1, 65535):
            raise ConfigError("portForward", f"port {port!r} is outside 1..65535")
    if start is None or (end is not None and end < start):  # type: ignore[operator]
        raise ConfigError("portForward", f"range {start}-{end} ends before it starts")


def matches(pattern: re.Pattern[str], value: object, optional: bool = True) -> bool:
    return (optional and value is None) or (isinstance(value, str) and bool(pattern.match(value)))


def _interface_problems(i: DomainInterface) -> list[str]:
    multiqueue = int_in(i.queues, 2, MAX_QUEUES)
    forwards = isinstance(i.port_forwards, tuple) and all(
        isinstance(p, PortForward) for p in i.port_forwards
    )
    checks = [
        (i.type in TYPES, f"type {i.type!r} is not one of {', '.join(TYPES)}"),
        (isinstance(i.mac, MacAddress) and not i.mac.is_multicast, f"MAC {i.mac} is not unicast"),
        (matches(_MODEL_RE, i.model, optional=False), f"model {i.model!r}"),
        (matches(_IFNAME_RE, i.target), f"tap name {i.target!r}"),
        (matches(_IFNAME_RE, i.source_dev), f"source device {i.source_dev!r}"),
        (matches(ABSPATH_RE, i.passt_log), f"passt log {i.passt_log!r} is not absolute"),
        (i.mtu is None or int_in(i.mtu, 68, 65535), f"MTU {i.mtu!r} is outside 68..65535"),
        (i.boot_order is None or int_in(i.boot_order, 1, 65535), f"boot order {i.boot_order!r}"),
        (i.queues is None or int_in(i.queues, 1, MAX_QUEUES), f"queues {i.queues!r} not 1..256"),
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
    """KubeVirt's passt port rules (`converter/network/passt.go`, docs/kubevirt.md, passt binding).

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


def element(tag: str, **attrs: str) -> etree._Element:
    return etree.Element(tag, attrs)


def _model(model: str) -> str:
    return "virtio-non-transitional" if model == "virtio" else model


def interface_element(iface: DomainInterface) -> etree._Element:
    """A new `<interface>` with its children in KubeVirt's order."""
    el = element("interface", type=iface.type)
    el.extend(interface_children(iface))
    return el


def interface_children(i: DomainInterface) -> list[etree._Element]:
    out: list[etree._Element] = []
    if i.pci_address is not None:
        out.append(_pci_element(i.pci_address))
    out.append(element("source", dev=i.source_dev) if i.source_dev else element("source"))
    if i.target is not None:
        out.append(element("target", dev=i.target, managed="no"))
    out += [element("model", type=_model(i.model)), element("mac", address=str(i.mac))]
    if i.mtu is not None:
        out.append(element("mtu", size=str(i.mtu)))
    if i.boot_order is not None:
        out.append(element("boot", order=str(i.boot_order)))
    if i.link_down:
        out.append(element("link", state="down"))
    out.append(element("alias", name="ua-" + i.alias))
    if int_in(i.queues, 2, MAX_QUEUES):
        extra = {"name": "vhost"} if i.type == "ethernet" else {}
        out.append(element("driver", **extra, queues=str(i.queues)))
    if i.boot_order is None and i.type == "ethernet":
        out.append(element("rom", enabled="no"))
    if i.is_passt:
        log = {"logFile": i.passt_log} if i.passt_log else {}
        out.append(element("backend", type="passt", **log))
    for fwd in i.port_forwards:
        out.append(_port_forward(fwd))
    return out


def _pci_element(p: PciAddress) -> etree._Element:
    return element(
        "address",
        type="pci",
        domain=f"{p.domain:#06x}",
        bus=f"{p.bus:#04x}",
        slot=f"{p.slot:#04x}",
        function=f"{p.function:#x}",
    )


def _port_forward(fwd: PortForward) -> etree._Element:
    el = element("portForward", proto=fwd.proto)
    for start, end, exclude in fwd.ranges:
        rng = etree.SubElement(el, "range", start=str(start))
        if end is not None:
            rng.set("end", str(end))
        if exclude:
            rng.set("exclude", "yes")
    return el
