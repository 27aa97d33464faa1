"""Address value types shared by every layer.

A MAC inside vmnet is a `MacAddress`, never a raw string: it is parsed once,
at the edge, and always printed lower-case with colons.

"Has an IP" follows Go's `net.IP.IsGlobalUnicast`, as KubeVirt does: RFC 1918,
CGNAT and ULA addresses count; loopback, link-local, multicast, unspecified
and the limited broadcast do not. `ipaddress.is_global` is not that rule.
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass

_MAC_RE = re.compile(r"^[0-9a-fA-F]{2}([:-])(?:[0-9a-fA-F]{2}\1){4}[0-9a-fA-F]{2}$")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True, order=True)
class MacAddress:
    """A 48-bit Ethernet address."""

    packed: bytes

    def __post_init__(self) -> None:
        if len(self.packed) != 6:
            raise ValueError(f"a MAC address has 6 bytes, not {len(self.packed)}")

    @classmethod
    def parse(cls, text: str) -> MacAddress:
        """Parse `aa:bb:cc:dd:ee:ff` or `aa-bb-cc-dd-ee-ff`, any case.

        Raises:
            ValueError: the text is not such an address.
        """
        if not isinstance(text, str) or not _MAC_RE.match(text):
            raise ValueError(f"invalid MAC address {text!r}")
        return cls(bytes.fromhex(text.replace(":", "").replace("-", "")))

    @classmethod
    def random_local(cls, rand: bytes | None = None) -> MacAddress:
        """A random locally administered unicast address."""
        raw = bytearray(rand if rand is not None else os.urandom(6))
        raw[0] = (raw[0] & 0xFC) | 0x02
        return cls(bytes(raw))

    @property
    def is_multicast(self) -> bool:
        return bool(self.packed[0] & 0x01)

    @property
    def is_zero(self) -> bool:
        return self.packed == bytes(6)

    def __str__(self) -> str:
        return ":".join(f"{b:02x}" for b in self.packed)

    def __repr__(self) -> str:
        return f"MacAddress('{self}')"


def eui64_link_local(mac: MacAddress) -> ipaddress.IPv6Address:
    """fe80::/64 with the modified EUI-64 interface id of `mac` (RFC 4291 App. A),
    the link-local address Linux gives a link by default (addr_gen_mode 0)."""
    b = mac.packed
    iid = bytes((b[0] ^ 0x02, b[1], b[2], 0xFF, 0xFE, b[3], b[4], b[5]))
    return ipaddress.IPv6Address(b"\xfe\x80" + bytes(6) + iid)


def is_global_unicast(ip: IPAddress) -> bool:
    """Go's `net.IP.IsGlobalUnicast`, as the module docstring describes."""
    if ip.version == 4 and ip == ipaddress.IPv4Address("255.255.255.255"):
        return False
    return not (ip.is_loopback or ip.is_link_local or ip.is_multicast or ip.is_unspecified)
