"""Sans-IO DHCPv4 codec: bytes <-> `DhcpMessage` (RFC 2131 §2, RFC 2132).

This module does no I/O and imports no socket, asyncio or pyroute2 (a test
enforces it). The server hands it bytes and sends what it returns.

`decode` only ever raises `DhcpDecodeError`, whatever the input: it is
remote input. It accepts any op code; policy belongs to the responder.

Options are kept in wire order as (code, value) pairs, PAD and END left
out. Several instances of one code are concatenated into the first one
(RFC 3396 §7); options in `file`/`sname` are read when option 52 says so
(RFC 2131 §4.1, order: options, file, sname).

`encode` writes each option once, splitting values longer than 255 bytes
into consecutive instances (RFC 3396 §6), ends with END and pads the
message to the BOOTP minimum of 300 bytes (RFC 1542 §2.1). It never uses
option overload.

chaddr, sname and file are stored at their full wire widths (16, 64,
128 bytes); shorter values given to the constructor are zero-padded, so
`decode(encode(m)) == m` for every message with distinct option codes.

`frame_ipv4_udp` builds the IPv4 + UDP headers for replies sent on an
AF_PACKET socket (RFC 791, RFC 768, checksums included).
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address

from vmnet.core.addr import MacAddress
from vmnet.core.errors import DhcpDecodeError
from vmnet.protocols.dhcp4.options import OptionCode

BOOTREQUEST = 1
BOOTREPLY = 2
MAGIC_COOKIE = b"\x63\x82\x53\x63"  # RFC 2131 §3
BROADCAST_FLAG = 0x8000  # RFC 2131 §2, figure 2
MIN_MESSAGE = 300  # RFC 1542 §2.1: BOOTP relays may drop smaller messages
IP_UDP_HEADERS = 28
_END = bytes((OptionCode.END,))
_HEADER = struct.Struct("!BBBBIHH4s4s4s4s16s64s128s")  # 236 bytes
_ZERO = IPv4Address(0)
_ZERO_BYTES = bytes(4)


@dataclass(frozen=True, slots=True)
class DhcpMessage:
    """One BOOTP/DHCP message (RFC 2131 figure 1)."""

    op: int = BOOTREQUEST
    htype: int = 1
    hlen: int = 6
    hops: int = 0
    xid: int = 0
    secs: int = 0
    flags: int = 0
    ciaddr: IPv4Address = _ZERO
    yiaddr: IPv4Address = _ZERO
    siaddr: IPv4Address = _ZERO
    giaddr: IPv4Address = _ZERO
    chaddr: bytes = b""
    sname: bytes = b""
    file: bytes = b""
    options: tuple[tuple[int, bytes], ...] = ()

    def __post_init__(self) -> None:
        for name, width in (("chaddr", 16), ("sname", 64), ("file", 128)):
            value = getattr(self, name)
            if len(value) == width:
                continue
            if len(value) > width:
                raise ValueError(f"{name} is longer than {width} bytes")
            object.__setattr__(self, name, bytes(value).ljust(width, b"\0"))
        for code, _ in self.options:
            if not 0 < code < 255:
                raise ValueError(f"option code {code} cannot be carried")

    def option(self, code: int) -> bytes | None:
        """The value of option `code`, or None."""
        for have, value in self.options:
            if have == code:
                return value
        return None

    @property
    def message_type(self) -> int | None:
        """Option 53, or None for plain BOOTP or a malformed value."""
        value = self.option(OptionCode.MESSAGE_TYPE)
        return value[0] if value is not None and len(value) == 1 else None

    @property
    def requested_ip(self) -> IPv4Address | None:
        return self._address(OptionCode.REQUESTED_IP)

    @property
    def server_id(self) -> IPv4Address | None:
        return self._address(OptionCode.SERVER_ID)

    @property
    def parameter_request_list(self) -> tuple[int, ...]:
        return tuple(self.option(OptionCode.PARAMETER_REQUEST_LIST) or b"")

    @property
    def max_message_size(self) -> int | None:
        value = self.option(OptionCode.MAX_MESSAGE_SIZE)
        return int.from_bytes(value, "big") if value is not None and len(value) == 2 else None

    @property
    def client_mac(self) -> MacAddress | None:
        """chaddr as a MAC when the hardware is Ethernet (htype 1, hlen 6)."""
        if self.htype != 1 or self.hlen != 6:
            return None
        return MacAddress(self.chaddr[:6])

    @property
    def broadcast(self) -> bool:
        return bool(self.flags & BROADCAST_FLAG)

    def _address(self, code: int) -> IPv4Address | None:
        value = self.option(code)
        return IPv4Address(value) if value is not None and len(value) == 4 else None


def decode(data: bytes) -> DhcpMessage:
    """Parse one DHCP message.

    Raises:
        DhcpDecodeError: too short, no magic cookie, or a truncated option.
    """
    if len(data) < _HEADER.size + 4:
        raise DhcpDecodeError(f"dhcp decode: {len(data)} bytes is shorter than 240")
    if data[_HEADER.size : _HEADER.size + 4] != MAGIC_COOKIE:
        raise DhcpDecodeError("dhcp decode: no magic cookie")
    fields = _HEADER.unpack_from(data)
    if fields[2] > 16:
        raise DhcpDecodeError(f"dhcp decode: hlen {fields[2]} is larger than 16")
    raw = _parse_options(data[_HEADER.size + 4 :])
    overload = dict(raw).get(OptionCode.OVERLOAD, b"")
    if len(overload) == 1 and overload[0] in (1, 2, 3):
        if overload[0] & 1:
            raw += _parse_options(fields[13])
        if overload[0] & 2:
            raw += _parse_options(fields[12])
    return DhcpMessage(  # type: ignore[misc]  # 14 positional fields, then options
        *fields[:7],
        *(_ZERO if a == _ZERO_BYTES else IPv4Address(a) for a in fields[7:11]),
        *fields[11:14],
        options=_merge(raw),
    )


def _parse_options(area: bytes) -> list[tuple[int, bytes]]:
    found: list[tuple[int, bytes]] = []
    pos = 0
    while pos < len(area):
        code = area[pos]
        if code == OptionCode.END:
            break
        if code == OptionCode.PAD:
            pos += 1
            continue
        if pos + 1 >= len(area) or pos + 2 + area[pos + 1] > len(area):
            raise DhcpDecodeError(f"dhcp decode: option {code} is truncated")
        found.append((code, area[pos + 2 : pos + 2 + area[pos + 1]]))
        pos += 2 + area[pos + 1]
    return found


def _merge(raw: list[tuple[int, bytes]]) -> tuple[tuple[int, bytes], ...]:
    merged: dict[int, bytes] = {}
    for code, value in raw:
        merged[code] = merged.get(code, b"") + value
    return tuple(merged.items())


def encode(msg: DhcpMessage) -> bytes:
    """Serialize `msg`."""
    head = _HEADER.pack(
        msg.op,
        msg.htype,
        msg.hlen,
        msg.hops,
        msg.xid,
        msg.secs,
        msg.flags,
        msg.ciaddr.packed,
        msg.yiaddr.packed,
        msg.siaddr.packed,
        msg.giaddr.packed,
        msg.chaddr,
        msg.sname,
        msg.file,
    )
    return (head + encode_options(msg.options)).ljust(MIN_MESSAGE, b"\0")


@functools.lru_cache(maxsize=64)
def encode_options(options: tuple[tuple[int, bytes], ...]) -> bytes:
    """The magic cookie, `options` and END. A responder with a fixed lease sends
    few distinct option sets, so the last 64 are kept."""
    return b"".join([MAGIC_COOKIE, *(encode_option(c, v) for c, v in options), _END])


def encoded_length(options: Sequence[tuple[int, bytes]]) -> int:
    """`len(encode(m))` for a message `m` with these options, without encoding."""
    raw = _HEADER.size + len(MAGIC_COOKIE) + 1
    for _, value in options:
        size = len(value)
        raw += size + 2 if size <= 255 else size + 2 * -(-size // 255)
    return max(raw, MIN_MESSAGE)


def encode_option(code: int, value: bytes) -> bytes:
    """One option with RFC 3396 splitting: `(121, 300 bytes)` -> 121,255,.. 121,45,.."""
    if len(value) <= 255:
        return bytes((code, len(value))) + value
    return b"".join(
        bytes((code, len(value[start : start + 255]))) + value[start : start + 255]
        for start in range(0, len(value), 255)
    )


def frame_ipv4_udp(
    src: IPv4Address, dst: IPv4Address, ports: tuple[int, int], payload: bytes
) -> bytes:
    """IPv4 header (TTL 64, DF clear) + UDP header + payload, checksums set."""
    udp_len = 8 + len(payload)
    pseudo = src.packed + dst.packed + struct.pack("!BBH", 0, 17, udp_len)
    udp = struct.pack("!HHHH", ports[0], ports[1], udp_len, 0) + payload
    udp_sum = checksum(pseudo + udp) or 0xFFFF
    udp = udp[:6] + struct.pack("!H", udp_sum) + udp[8:]
    ip = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0x10, 20 + udp_len, 0, 0, 64, 17, 0, src.packed, dst.packed
    )
    ip = ip[:10] + struct.pack("!H", checksum(ip)) + ip[12:]
    return ip + udp


def checksum(data: bytes) -> int:
    """RFC 1071 one's-complement sum, complemented.

    The 16-bit words read as one big-endian integer N: since 2**16 = 1
    (mod 0xFFFF), N mod 0xFFFF is their end-around-carry sum, except that a
    non-zero sum is 0xFFFF rather than 0 (RFC 1071 §1).
    """
    if len(data) % 2:
        data += b"\0"
    number = int.from_bytes(data, "big")
    total = number % 0xFFFF or (0xFFFF if number else 0)
    return ~total & 0xFFFF
