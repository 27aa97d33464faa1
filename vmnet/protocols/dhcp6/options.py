"""DHCPv6 option values that are not nested options: DUIDs, address and name lists.

Every encoder is a pure function from typed values to the option's value
bytes (no code, no length: framing is the codec's job).

The server's DUID is DUID-LL over Ethernet of the bridge MAC, as KubeVirt
sends (RFC 8415 §11.4); a client's MAC is read from DUID-LLT or DUID-LL
over Ethernet only (DUID-EN and DUID-UUID carry none).

Domain lists (RFC 3646 §4) are RFC 1035 §3.1 labels, uncompressed, with
names validated as for DHCPv4 (`vmnet.protocols.dhcp4.options.validate_domain`).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from ipaddress import IPv6Address

from vmnet.core.addr import MacAddress
from vmnet.protocols.dhcp4.options import dns_names

DUID_LLT = 1
DUID_LL = 3
HWTYPE_ETHERNET = 1


def duid_ll(mac: MacAddress) -> bytes:
    """DUID-LL over Ethernet (RFC 8415 §11.4): `00 03 00 01` + the 6 MAC bytes."""
    return struct.pack("!HH", DUID_LL, HWTYPE_ETHERNET) + mac.packed


def duid_mac(duid: bytes | None) -> MacAddress | None:
    """The MAC inside a DUID-LLT or DUID-LL over Ethernet (RFC 8415 §11.2, §11.4)."""
    if duid is None or len(duid) < 4:
        return None
    kind, hwtype = struct.unpack_from("!HH", duid)
    lladdr = duid[8:] if kind == DUID_LLT else duid[4:] if kind == DUID_LL else b""
    return MacAddress(lladdr) if hwtype == HWTYPE_ETHERNET and len(lladdr) == 6 else None


def ipv6_list(addrs: Iterable[IPv6Address]) -> bytes:
    """Option 23 value: 16 bytes per address (RFC 3646 §3)."""
    return b"".join(a.packed for a in addrs)


def domain_list(names: Sequence[str]) -> bytes:
    """Option 24 value (RFC 3646 §4): the names as RFC 1035 labels, no compression.

    `["svc.local"]` -> `03 s v c 05 l o c a l 00`.

    Raises:
        ConfigError: ("search", ...) for a name that is not a valid domain.
    """
    return dns_names(names)
