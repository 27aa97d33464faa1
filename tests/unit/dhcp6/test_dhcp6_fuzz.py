"""Hypothesis: the codec round-trips, and remote bytes only ever raise DhcpDecodeError."""

import contextlib
from ipaddress import IPv6Address, IPv6Interface

from hypothesis import given, settings
from hypothesis import strategies as st

from vmnet.core.addr import MacAddress
from vmnet.core.errors import DhcpDecodeError
from vmnet.protocols.dhcp6.codec import (
    Dhcp6Message,
    Ia,
    IaAddress,
    OptionCode,
    Status,
    decode,
    encode,
    ipv6_udp,
)
from vmnet.protocols.dhcp6.config import Dhcp6Config
from vmnet.protocols.dhcp6.ra import parse_rs
from vmnet.protocols.dhcp6.responder import Responder6

LAYOUT = {3, 4, 5, 6, 7, 8, 13, 14, 23, 25, 26}
u32 = st.integers(0, 2**32 - 1)
ip6 = st.builds(IPv6Address, st.integers(0, 2**128 - 1))
opaque = st.tuples(st.integers(0, 0xFFFF).filter(lambda c: c not in LAYOUT), st.binary(max_size=40))
status = st.builds(Status, st.integers(0, 0xFFFF), st.text(max_size=20)).map(lambda s: s.option())
iaaddr = st.builds(IaAddress, ip6, u32, u32, st.tuples(status) | st.just(())).map(
    lambda a: a.option()
)
ia = st.builds(
    Ia,
    st.sampled_from([OptionCode.IA_NA, OptionCode.IA_PD]),
    u32,
    u32,
    u32,
    st.lists(iaaddr | status, max_size=3).map(tuple),
).map(lambda i: i.option())
ia_ta = st.builds(
    Ia, st.just(OptionCode.IA_TA), u32, options=st.lists(iaaddr, max_size=2).map(tuple)
).map(lambda i: i.option())
fixed = st.sampled_from(
    [(14, b""), (7, b"\x05"), (8, b"\x00\x10"), (6, b"\x00\x17\x00\x18"), (23, bytes(16))]
)
option = opaque | ia | ia_ta | status | fixed
kinds = st.integers(0, 255).filter(lambda t: t not in (12, 13))
messages = st.builds(
    Dhcp6Message, kinds, st.integers(0, 0xFFFFFF), st.lists(option, max_size=8).map(tuple)
)
GUEST = MacAddress.parse("52:54:00:aa:bb:02")
CONFIG = Dhcp6Config(
    GUEST,
    IPv6Interface("fd10:0:2::2/120"),
    MacAddress.parse("02:00:00:00:00:00"),
    dns=(IPv6Address("fd00::10"),),
    search=("cluster.local",),
)


@given(messages)
def test_decode_inverts_encode(msg: Dhcp6Message) -> None:
    assert decode(encode(msg)) == msg


@given(st.binary(max_size=300))
def test_random_bytes_only_raise_decode_error(data: bytes) -> None:
    with contextlib.suppress(DhcpDecodeError):
        decode(data)


@given(st.binary(max_size=120))
def test_random_frames_and_solicitations_only_raise_decode_error(data: bytes) -> None:
    for call in (lambda: ipv6_udp(data), lambda: parse_rs(data, 255, IPv6Address("fe80::1"))):
        with contextlib.suppress(DhcpDecodeError):
            call()


@settings(max_examples=300)
@given(
    st.integers(1, 11),
    st.binary(max_size=3),
    st.lists(option, max_size=6),
    st.sampled_from([None, GUEST]),
)
def test_responder_never_raises_and_replies_encode(
    kind: int, xid: bytes, options: list[tuple[int, bytes]], mac: MacAddress | None
) -> None:
    head = [(1, bytes.fromhex("00030001") + GUEST.packed)]
    msg = decode(encode(Dhcp6Message(kind, int.from_bytes(xid, "big"), tuple(head + options))))
    reply = Responder6(CONFIG).respond(msg, src_mac=mac)
    if reply is not None:
        assert decode(encode(reply)) == reply
        assert reply.transaction_id == msg.transaction_id


@settings(max_examples=300)
@given(st.binary(min_size=4, max_size=4), st.binary(max_size=200))
def test_random_option_areas_decode_or_raise_and_never_crash_the_responder(
    header: bytes, area: bytes
) -> None:
    try:
        msg = decode(header + area)
    except DhcpDecodeError:
        return
    Responder6(CONFIG).respond(msg)
