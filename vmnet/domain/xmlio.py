"""Domain XML in and out: a bootable skeleton, safe parsing, printing, C14N.

Parsing treats the XML as untrusted: no DTD, no entity expansion, no network
access.

Printing never changes its input; `canonical` is the form golden tests
compare (C14N 2.0, whitespace-only text dropped).
"""

from __future__ import annotations

import re
import uuid as _uuid
import xml.etree.ElementTree as _stdlib_et
from collections.abc import Sequence
from copy import deepcopy

from lxml import etree

from vmnet.core.errors import ConfigError
from vmnet.domain.decoration import decorate
from vmnet.domain.interface import ABSPATH_RE, DomainInterface, element, int_in, matches

_DOMNAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+:-]{0,63}$")


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
        if not matches(ABSPATH_RE, path):
            raise ConfigError(field, f"{path!r} is not an absolute path")
    dom = element("domain", type="qemu")
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
        serial.extend([element("source", path=serial_log), element("target", port="0")])
    etree.SubElement(devices, "memballoon", model="none")
    return dom


def _texts(parent: etree._Element, **texts: str | None) -> None:
    for tag, text in texts.items():
        if text is not None:
            etree.SubElement(parent, tag).text = text


def _check_skeleton(name: str, memory_mib: int, vcpus: int, uuid: str | None) -> None:
    if not matches(_DOMNAME_RE, name, optional=False):
        raise ConfigError("name", f"{name!r} is not a valid domain name")
    if not int_in(memory_mib, 16, 1 << 24):
        raise ConfigError("memory", f"{memory_mib!r} MiB is outside 16 MiB..16 TiB")
    if not int_in(vcpus, 1, 255):
        raise ConfigError("vcpus", f"{vcpus!r} is outside 1..255")
    try:
        _uuid.UUID(uuid) if uuid is not None else None
    except (ValueError, TypeError, AttributeError):
        raise ConfigError("uuid", f"{uuid!r} is not a UUID") from None


def parse_domain(text: bytes | str) -> etree._Element:
    """Parse untrusted domain XML.

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
