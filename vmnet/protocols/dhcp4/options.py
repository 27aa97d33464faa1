"""DHCPv4 option codes and pure option-value encoders.

Every encoder is a pure function from typed values to the option's value
bytes (no code, no length byte: framing and RFC 3396 splitting are the
codec's job).

IPv4 addresses are always 4 bytes each (RFC 2132 §3.3, §3.8). Writing them
as 16-byte IPv4-in-IPv6 values made Windows ignore offers (KubeVirt #789).

Classless static routes follow RFC 3442 §3: per route, the prefix length,
then ceil(len/8) significant destination octets, then the 4-byte router;
router 0.0.0.0 means "on-link". The default route is moved last, keeping
the order of the others (KubeVirt `sortRoutes`).

Domain search (RFC 3397) is a list of RFC 1035 names written as labels,
uncompressed. Names are validated as KubeVirt does and the encoded list is
capped at 255 bytes; violations raise `ConfigError("search", ...)`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from enum import IntEnum
from ipaddress import IPv4Address, IPv4Network
from typing import Protocol

from vmnet.core.errors import ConfigError


class OptionCode(IntEnum):
    """Option codes vmnet reads or writes (RFC 2132 unless noted)."""

    PAD = 0
    SUBNET_MASK = 1
    ROUTER = 3
    DNS = 6
    HOSTNAME = 12
    DOMAIN_NAME = 15
    INTERFACE_MTU = 26
    BROADCAST = 28
    NTP = 42
    REQUESTED_IP = 50
    LEASE_TIME = 51
    OVERLOAD = 52
    MESSAGE_TYPE = 53
    SERVER_ID = 54
    PARAMETER_REQUEST_LIST = 55
    MESSAGE = 56
    MAX_MESSAGE_SIZE = 57
    RENEWAL_TIME = 58
    REBINDING_TIME = 59
    CLIENT_ID = 61
    TFTP_SERVER = 66
    BOOT_FILE = 67
    DOMAIN_SEARCH = 119  # RFC 3397
    CLASSLESS_ROUTES = 121  # RFC 3442
    MS_CLASSLESS_ROUTES = 249  # Microsoft's pre-RFC 3442 copy of 121
    END = 255


class MessageType(IntEnum):
    """Option 53 values (RFC 2132 §9.6)."""

    DISCOVER = 1
    OFFER = 2
    REQUEST = 3
    DECLINE = 4
    ACK = 5
    NAK = 6
    RELEASE = 7
    INFORM = 8


PRIVATE_CODES = range(224, 255)  # RFC 2132 §1: site-specific options
MAX_SEARCH_BYTES = 255  # KubeVirt's cap on the encoded option 119
_LABEL = r"[_a-z0-9]([_a-z0-9-]{0,61}[_a-z0-9])?"
_LAST_LABEL = r"[a-z]([_a-z0-9-]{0,61}[_a-z0-9])?"
_DOMAIN_RE = re.compile(rf"({_LABEL}\.)*{_LAST_LABEL}\.?\Z", re.ASCII | re.IGNORECASE)


class RouteLike(Protocol):
    """One option-121 entry; `vmnet.protocols.dhcp4.config.Route` is the real one."""

    @property
    def destination(self) -> IPv4Network: ...

    @property
    def gateway(self) -> IPv4Address | None: ...


def ipv4_list(addrs: Iterable[IPv4Address]) -> bytes:
    """Options 3, 6, 42, 54: 4 bytes per address.

    >>> ipv4_list([IPv4Address("192.168.2.2"), IPv4Address("192.168.2.3")]).hex(",")
    'c0,a8,02,02,c0,a8,02,03'
    """
    return b"".join(IPv4Address(a).packed for a in addrs)


def u16(value: int) -> bytes:
    """Options 26, 57: unsigned 16-bit big endian (1500 -> 05 dc)."""
    return value.to_bytes(2, "big")


def u32(value: int) -> bytes:
    """Options 51, 58, 59: unsigned 32-bit big endian (86313600 -> 05 25 0a 80)."""
    return value.to_bytes(4, "big")


def classless_routes(routes: Sequence[RouteLike]) -> bytes:
    """Option 121 value (RFC 3442 §3), default route last.

    Worked example (KubeVirt's Calico vector): default via 169.254.1.1 and
    169.254.1.1/32 on-link give ``32,169,254,1,1,0,0,0,0, 0,169,254,1,1``.
    """
    ordered = sorted(routes, key=lambda r: r.destination.prefixlen == 0)
    out = bytearray()
    for route in ordered:
        plen = route.destination.prefixlen
        out.append(plen)
        out += route.destination.network_address.packed[: (plen + 7) // 8]
        out += (route.gateway or IPv4Address(0)).packed
    return bytes(out)


def parse_classless_routes(data: bytes) -> tuple[tuple[IPv4Network, IPv4Address | None], ...]:
    """Inverse of `classless_routes` (order kept). Raises ValueError."""
    routes = []
    pos = 0
    while pos < len(data):
        plen = data[pos]
        width = (plen + 7) // 8
        if plen > 32 or pos + 1 + width + 4 > len(data):
            raise ValueError(f"bad classless route at byte {pos}")
        dest = data[pos + 1 : pos + 1 + width] + bytes(4 - width)
        gw = IPv4Address(data[pos + 1 + width : pos + 5 + width])
        routes.append((IPv4Network((dest, plen)), None if int(gw) == 0 else gw))
        pos += 5 + width
    return tuple(routes)


def validate_domain(domain: str) -> None:
    """Raise ConfigError unless `domain` is a KubeVirt-valid search domain."""
    if not isinstance(domain, str) or len(domain.rstrip(".")) > 253 or not _DOMAIN_RE.match(domain):
        raise ConfigError("search", f"Search domain is not valid: {domain!r}")


def dns_names(names: Sequence[str]) -> bytes:
    """RFC 1035 §3.1 names as labels, uncompressed, each name validated.

    ``["foo.com", "foo.local"]`` -> ``3 f o o 3 c o m 0 3 f o o 5 l o c a l 0``.
    """
    out = bytearray()
    for name in names:
        validate_domain(name)
        for label in name.rstrip(".").split("."):
            out.append(len(label))
            out += label.encode("ascii")
        out.append(0)
    return bytes(out)


def domain_search(domains: Sequence[str]) -> bytes:
    """Option 119 value (RFC 3397 §2): `dns_names`, capped at 255 bytes as KubeVirt does."""
    out = dns_names(domains)
    if len(out) > MAX_SEARCH_BYTES:
        raise ConfigError(
            "search", f"Search domains length exceeded allowable size: was {len(out)} long"
        )
    return out


def parse_domain_search(data: bytes) -> tuple[str, ...]:
    """Decode option 119, including RFC 1035 §4.1.4 compression pointers."""
    names: list[str] = []
    pos = 0
    while pos < len(data):
        labels, pos = _read_name(data, pos)
        names.append(".".join(labels))
    return tuple(names)


def _read_name(data: bytes, pos: int) -> tuple[list[str], int]:
    labels: list[str] = []
    end = -1
    hops = 0
    while True:
        if pos >= len(data):
            raise ValueError("truncated domain name")
        size = data[pos]
        if size == 0:
            return labels, (pos + 1 if end < 0 else end)
        if size & 0xC0 == 0xC0:
            hops += 1
            if pos + 1 >= len(data) or hops > 64:
                raise ValueError("bad compression pointer")
            end = pos + 2 if end < 0 else end
            pos = ((size & 0x3F) << 8) | data[pos + 1]
            continue
        labels.append(data[pos + 1 : pos + 1 + size].decode("ascii", "replace"))
        pos += 1 + size


def longest_domain(search: Sequence[str]) -> str | None:
    """Option 15 when not configured: the longest search entry, first on ties."""
    best: str | None = None
    for domain in search:
        if best is None or len(domain) > len(best):
            best = domain
    return best


def text(value: str, field: str) -> bytes:
    """Options 12, 15, 66, 67: NVT ASCII, 1..255 bytes (RFC 2132 §2)."""
    try:
        raw = value.encode("ascii")
    except (UnicodeEncodeError, AttributeError) as err:
        raise ConfigError(field, f"must be ASCII text, not {value!r}") from err
    if not 1 <= len(raw) <= 255 or b"\0" in raw:
        raise ConfigError(field, f"must be 1-255 printable bytes, not {value!r}")
    return raw
