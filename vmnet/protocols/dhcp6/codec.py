"""Sans-IO DHCPv6 codec: bytes <-> `Dhcp6Message` (RFC 8415 §8, §21).

This module does no I/O and imports no socket, asyncio or pyroute2 (a test
enforces it).

`decode` only ever raises `DhcpDecodeError`, whatever the input. A message
that decodes is well formed: every option whose layout is known here
(IA_NA, IA_TA, IA_PD and the IAADDR/IAPREFIX inside them, Status Code,
Elapsed Time, Preference, Rapid Commit, ORO, DNS servers) has a legal
length and nested options that parse, so the typed accessors never raise.

Options are (code, value) pairs kept in wire order; a code may repeat
(several IA_NA in one message). `encode` writes them back in that order,
so `decode(encode(m)) == m` for every well-formed message.

Relay messages (RELAY-FORW, RELAY-REPL, RFC 8415 §9) have another header
and are rejected: vmnet serves one link directly, never through a relay.

Structured option values are typed (`Ia`, `IaAddress`, `Status`), each
with `parse` and `option`; flat values are in `vmnet.protocols.dhcp6.options`.

`ipv6_udp` splits an IPv6 packet read from an AF_PACKET socket into
addresses, ports and payload. It does not verify the UDP checksum: packets
from a local veth or a virtio guest carry partial (offloaded) checksums.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum
from ipaddress import IPv6Address

from vmnet.core.errors import DhcpDecodeError

Options = tuple[tuple[int, bytes], ...]


class MessageType(IntEnum):
    """RFC 8415 §7.3."""

    SOLICIT = 1
    ADVERTISE = 2
    REQUEST = 3
    CONFIRM = 4
    RENEW = 5
    REBIND = 6
    REPLY = 7
    RELEASE = 8
    DECLINE = 9
    RECONFIGURE = 10
    INFORMATION_REQUEST = 11
    RELAY_FORW = 12
    RELAY_REPL = 13


class OptionCode(IntEnum):
    """RFC 8415 §21 unless noted."""

    CLIENTID = 1
    SERVERID = 2
    IA_NA = 3
    IA_TA = 4
    IAADDR = 5
    ORO = 6
    PREFERENCE = 7
    ELAPSED_TIME = 8
    STATUS_CODE = 13
    RAPID_COMMIT = 14
    DNS_SERVERS = 23  # RFC 3646 §3
    DOMAIN_LIST = 24  # RFC 3646 §4
    IA_PD = 25
    IAPREFIX = 26


class StatusCode(IntEnum):
    """RFC 8415 §21.13."""

    SUCCESS = 0
    UNSPEC_FAIL = 1
    NO_ADDRS_AVAIL = 2
    NO_BINDING = 3
    NOT_ON_LINK = 4
    USE_MULTICAST = 5
    NO_PREFIX_AVAIL = 6


_IA_FIXED: dict[int, int] = {OptionCode.IA_NA: 12, OptionCode.IA_TA: 4, OptionCode.IA_PD: 12}
_NESTED_FIXED: dict[int, int] = {**_IA_FIXED, OptionCode.IAADDR: 24, OptionCode.IAPREFIX: 25}
_EXACT: dict[int, int] = {
    OptionCode.ELAPSED_TIME: 2,
    OptionCode.PREFERENCE: 1,
    OptionCode.RAPID_COMMIT: 0,
}
_MULTIPLE: dict[int, int] = {OptionCode.ORO: 2, OptionCode.DNS_SERVERS: 16}


@dataclass(frozen=True, slots=True)
class Dhcp6Message:
    """One client/server message (RFC 8415 §8): type, 24-bit transaction id, options."""

    msg_type: int
    transaction_id: int
    options: Options = ()

    def __post_init__(self) -> None:
        if not 0 <= self.msg_type <= 255 or self.msg_type in _RELAY:
            raise ValueError(f"message type {self.msg_type} cannot be carried")
        if not 0 <= self.transaction_id <= 0xFFFFFF:
            raise ValueError(f"transaction id {self.transaction_id:#x} is not 24 bits")
        _check_pairs(self.options)

    def option(self, code: int) -> bytes | None:
        """The first value of option `code`, or None."""
        for have, value in self.options:
            if have == code:
                return value
        return None

    def all(self, code: int) -> tuple[bytes, ...]:
        return tuple(value for have, value in self.options if have == code)

    @property
    def client_id(self) -> bytes | None:
        return self.option(OptionCode.CLIENTID)

    @property
    def server_id(self) -> bytes | None:
        return self.option(OptionCode.SERVERID)

    @property
    def rapid_commit(self) -> bool:
        return self.option(OptionCode.RAPID_COMMIT) is not None

    @property
    def oro(self) -> tuple[int, ...]:
        raw = b"".join(self.all(OptionCode.ORO))
        return tuple(int.from_bytes(raw[i : i + 2], "big") for i in range(0, len(raw) - 1, 2))

    @property
    def ias(self) -> tuple[Ia, ...]:
        """Every IA_NA, IA_TA and IA_PD, in wire order."""
        return tuple(Ia.parse(c, v) for c, v in self.options if c in _IA_FIXED)


@dataclass(frozen=True, slots=True)
class Ia:
    """An IA_NA, IA_TA or IA_PD (RFC 8415 §21.4, §21.5, §21.21); IA_TA has no T1/T2."""

    kind: int
    iaid: int
    t1: int = 0
    t2: int = 0
    options: Options = ()

    @classmethod
    def parse(cls, kind: int, value: bytes) -> Ia:
        if kind == OptionCode.IA_TA:
            return cls(kind, int.from_bytes(value[:4], "big"), options=_parse(value[4:]))
        iaid, t1, t2 = struct.unpack_from("!III", value)
        return cls(kind, iaid, t1, t2, _parse(value[12:]))

    def option(self) -> tuple[int, bytes]:
        head = struct.pack("!I", self.iaid)
        if self.kind != OptionCode.IA_TA:
            head += struct.pack("!II", self.t1, self.t2)
        return int(self.kind), head + encode_options(self.options)

    @property
    def addresses(self) -> tuple[IaAddress, ...]:
        return tuple(IaAddress.parse(v) for c, v in self.options if c == OptionCode.IAADDR)


@dataclass(frozen=True, slots=True)
class IaAddress:
    """IA Address option (RFC 8415 §21.6)."""

    address: IPv6Address
    preferred: int
    valid: int
    options: Options = ()

    @classmethod
    def parse(cls, value: bytes) -> IaAddress:
        preferred, valid = struct.unpack_from("!II", value, 16)
        return cls(IPv6Address(value[:16]), preferred, valid, _parse(value[24:]))

    def option(self) -> tuple[int, bytes]:
        value = self.address.packed + struct.pack("!II", self.preferred, self.valid)
        return int(OptionCode.IAADDR), value + encode_options(self.options)


@dataclass(frozen=True, slots=True)
class Status:
    """Status Code option (RFC 8415 §21.13): code and UTF-8 message."""

    code: int
    message: str = ""

    @classmethod
    def parse(cls, value: bytes) -> Status:
        return cls(int.from_bytes(value[:2], "big"), value[2:].decode("utf-8", "replace"))

    def option(self) -> tuple[int, bytes]:
        return int(OptionCode.STATUS_CODE), struct.pack("!H", self.code) + self.message.encode()


_RELAY = (MessageType.RELAY_FORW, MessageType.RELAY_REPL)


def decode(data: bytes) -> Dhcp6Message:
    """Parse one client/server message.

    Raises:
        DhcpDecodeError: shorter than 4 bytes, a relay message, a truncated
            option or an option of a known kind with a bad layout.
    """
    if len(data) < 4:
        raise DhcpDecodeError(f"dhcp6 decode: {len(data)} bytes is shorter than 4")
    if data[0] in _RELAY:
        raise DhcpDecodeError(f"dhcp6 decode: relay message type {data[0]} is not served")
    return Dhcp6Message(data[0], int.from_bytes(data[1:4], "big"), _parse(data[4:]))


def encode(msg: Dhcp6Message) -> bytes:
    """Serialize `msg`."""
    return (
        bytes((msg.msg_type,)) + msg.transaction_id.to_bytes(3, "big") + encode_options(msg.options)
    )


def encode_options(options: Iterable[tuple[int, bytes]]) -> bytes:
    """`((14, b""), (7, b"\\xff"))` -> `00 0e 00 00 00 07 00 01 ff`."""
    return b"".join(struct.pack("!HH", code, len(value)) + value for code, value in options)


def _parse(area: bytes) -> Options:
    found: list[tuple[int, bytes]] = []
    pos = 0
    while pos < len(area):
        if pos + 4 > len(area):
            raise DhcpDecodeError(f"dhcp6 decode: option header truncated at {pos}")
        code, size = struct.unpack_from("!HH", area, pos)
        if pos + 4 + size > len(area):
            raise DhcpDecodeError(f"dhcp6 decode: option {code} is truncated")
        value = bytes(area[pos + 4 : pos + 4 + size])
        _check_layout(code, value)
        found.append((code, value))
        pos += 4 + size
    return tuple(found)


def _check_layout(code: int, value: bytes) -> None:
    fixed = _NESTED_FIXED.get(code)
    if fixed is not None:
        if len(value) < fixed:
            raise DhcpDecodeError(f"dhcp6 decode: option {code} is shorter than {fixed}")
        _parse(value[fixed:])
    elif code == OptionCode.STATUS_CODE and len(value) < 2:
        raise DhcpDecodeError("dhcp6 decode: status code is shorter than 2")
    elif code in _EXACT and len(value) != _EXACT[code]:
        raise DhcpDecodeError(f"dhcp6 decode: option {code} must be {_EXACT[code]} bytes")
    elif code in _MULTIPLE and len(value) % _MULTIPLE[code]:
        raise DhcpDecodeError(f"dhcp6 decode: option {code} length {len(value)} is not whole")


def _check_pairs(options: Options) -> None:
    for pair in options:
        if len(pair) != 2 or not 0 <= pair[0] <= 0xFFFF or len(pair[1]) > 0xFFFF:
            raise ValueError(f"option {pair!r} cannot be carried")


@dataclass(frozen=True, slots=True)
class Udp6:
    """The parts of an IPv6/UDP packet the server needs."""

    src: IPv6Address
    dst: IPv6Address
    src_port: int
    dst_port: int
    payload: bytes


def ipv6_udp(packet: bytes) -> Udp6:
    """Split an IPv6 packet whose next header is UDP (RFC 8200 §3, RFC 768).

    Raises:
        DhcpDecodeError: not IPv6, not directly UDP, or truncated.
    """
    if len(packet) < 48 or packet[0] >> 4 != 6:
        raise DhcpDecodeError(f"dhcp6 frame: {len(packet)} bytes is not an IPv6/UDP packet")
    if packet[6] != 17:
        raise DhcpDecodeError(f"dhcp6 frame: next header {packet[6]} is not UDP")
    sport, dport, length = struct.unpack_from("!HHH", packet, 40)
    if length < 8 or 40 + length > len(packet):
        raise DhcpDecodeError(f"dhcp6 frame: UDP length {length} does not fit")
    return Udp6(
        IPv6Address(packet[8:24]),
        IPv6Address(packet[24:40]),
        sport,
        dport,
        bytes(packet[48 : 40 + length]),
    )
