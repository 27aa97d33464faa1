"""Whole Ethernet frames for DHCPv6 and RAs written straight to the VM's tap.

Pure: no I/O. On the bridge binding the bridge also holds the pod NIC, so
vmnet writes its replies and RAs to the tap itself (`vmnet.serve.tap6`):
nothing passes the bridge, and nothing reaches the cluster network. With
no kernel IPv6 stack in the path, the frame is built here: Ethernet II
(destination the VM's MAC), IPv6 (RFC 8200 §3), then UDP (RFC 768) or
ICMPv6 (RFC 4443 §2.1) with its checksum over the pseudo-header (RFC 8200
§8.1). An IPv6 multicast destination in a unicast Ethernet frame is
allowed (RFC 6085) and is how an RA reaches the VM alone.

`split` is the inverse for what the tap reads from the VM.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from ipaddress import IPv6Address

from vmnet.core.addr import MacAddress
from vmnet.core.errors import DhcpDecodeError

ETH_P_IPV6 = 0x86DD
UDP, ICMPV6 = 17, 58
ETH_HEADER = 14
IPV6_HEADER = 40
_CHECKSUM_AT = {UDP: 6, ICMPV6: 2}


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071): one's complement of the one's complement sum."""
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def udp(src_port: int, dst_port: int, payload: bytes) -> bytes:
    """A UDP header and `payload`, checksum 0 (`frame` fills it in)."""
    return struct.pack("!HHHH", src_port, dst_port, 8 + len(payload), 0) + payload


def frame(
    *,
    dst_mac: MacAddress,
    src_mac: MacAddress,
    src: IPv6Address,
    dst: IPv6Address,
    next_header: int,
    body: bytes,
    hop_limit: int,
) -> bytes:
    """An Ethernet frame carrying IPv6 with `body` (UDP or ICMPv6), checksum computed."""
    at = _CHECKSUM_AT[next_header]
    pseudo = src.packed + dst.packed + struct.pack("!I3xB", len(body), next_header)
    blank = body[:at] + b"\0\0" + body[at + 2 :]
    value = checksum(pseudo + blank)
    if next_header == UDP and value == 0:
        value = 0xFFFF  # RFC 768: a computed 0 is sent as all ones
    body = blank[:at] + struct.pack("!H", value) + blank[at + 2 :]
    ip = struct.pack("!IHBB", 6 << 28, len(body), next_header, hop_limit)
    eth = dst_mac.packed + src_mac.packed + struct.pack("!H", ETH_P_IPV6)
    return eth + ip + src.packed + dst.packed + body


@dataclass(frozen=True, slots=True)
class Frame:
    """An IPv6 frame from the VM: its source MAC and the IPv6 packet's parts."""

    src_mac: MacAddress
    src: IPv6Address
    next_header: int
    hop_limit: int
    packet: bytes  # from the IPv6 header on

    @property
    def body(self) -> bytes:
        return self.packet[IPV6_HEADER:]


def split(data: bytes) -> Frame:
    """The parts of an Ethernet frame carrying IPv6.

    Raises:
        DhcpDecodeError: not an IPv6 frame, or truncated.
    """
    if len(data) < ETH_HEADER + IPV6_HEADER:
        raise DhcpDecodeError(f"frame: {len(data)} bytes is too short for IPv6")
    (ethertype,) = struct.unpack_from("!H", data, 12)
    packet = data[ETH_HEADER:]
    if ethertype != ETH_P_IPV6 or packet[0] >> 4 != 6:
        raise DhcpDecodeError(f"frame: ethertype {ethertype:#06x} is not IPv6")
    (length,) = struct.unpack_from("!H", packet, 4)
    if IPV6_HEADER + length > len(packet):
        raise DhcpDecodeError(f"frame: IPv6 payload length {length} does not fit")
    return Frame(
        MacAddress(data[6:12]),
        IPv6Address(packet[8:24]),
        packet[6],
        packet[7],
        packet[: IPV6_HEADER + length],
    )
