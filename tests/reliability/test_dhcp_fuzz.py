"""Hypothesis against the DHCPv4 path a guest can reach (invariants: tests/reliability/dhcpfuzz.py).

What tests/unit/dhcp/test_dhcp_fuzz.py already covers (round trip, random
bytes only raise DhcpDecodeError, replies fit) is not repeated. Added here:
structured requests that reach every branch of the policy (all message
types, our and other server ids, the lease and other addresses, relays,
size limits) under three configurations; real client captures mutated byte
by byte; foreign clients never answered. `VMNET_FUZZ_EXAMPLES` sets the
number of examples (300 in the suite; `tox -e fuzz` runs many more).
"""

from __future__ import annotations

import os
from dataclasses import replace
from ipaddress import IPv4Address
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.reliability.dhcpfuzz import CONFIGS, VM_MAC, handle
from vmnet.protocols.dhcp4.codec import IP_UDP_HEADERS, MAGIC_COOKIE, DhcpMessage, encode
from vmnet.protocols.dhcp4.exchange import Exchange
from vmnet.protocols.dhcp4.responder import SingleLeaseResponder

EXAMPLES = int(os.environ.get("VMNET_FUZZ_EXAMPLES", "300"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
CAPTURES = sorted(Path(__file__).parents[1].glob("unit/dhcp/captures/*/*_discover.bin"))

ip4 = st.one_of(
    st.sampled_from(
        [
            IPv4Address(0),
            IPv4Address("10.22.0.2"),
            IPv4Address("10.0.2.2"),
            IPv4Address("10.27.0.5"),
            IPv4Address("169.254.75.10"),
            IPv4Address("10.0.2.1"),
            IPv4Address("255.255.255.255"),
        ]
    ),
    st.builds(IPv4Address, st.integers(0, 2**32 - 1)),
)
packed_ip = ip4.map(lambda a: a.packed)
chaddr = st.one_of(
    st.just(VM_MAC.packed + bytes(10)),
    st.binary(min_size=10, max_size=10).map(lambda tail: VM_MAC.packed + tail),
    st.binary(min_size=16, max_size=16),
)
known_options = st.fixed_dictionaries(
    {},
    optional={
        53: st.one_of(st.integers(0, 255).map(lambda k: bytes([k])), st.binary(max_size=3)),
        50: st.one_of(packed_ip, st.binary(max_size=6)),
        54: st.one_of(packed_ip, st.binary(max_size=6)),
        57: st.one_of(
            st.integers(0, 65535).map(lambda n: n.to_bytes(2, "big")), st.binary(max_size=3)
        ),
        55: st.binary(max_size=60),
        61: st.binary(max_size=40),
        12: st.binary(max_size=80),
        81: st.binary(max_size=40),
        60: st.binary(max_size=40),
    },
)
other_options = st.dictionaries(
    st.integers(1, 254).filter(lambda c: c != 52), st.binary(max_size=255), max_size=6
)
requests = st.builds(
    DhcpMessage,
    op=st.sampled_from([1, 1, 1, 2]),
    htype=st.sampled_from([1, 1, 1, 6, 0]),
    hlen=st.sampled_from([6, 6, 6, 0, 16]),
    hops=st.integers(0, 255),
    xid=st.integers(0, 2**32 - 1),
    secs=st.integers(0, 65535),
    flags=st.sampled_from([0, 0x8000, 0xFFFF]),
    ciaddr=ip4,
    yiaddr=ip4,
    siaddr=ip4,
    giaddr=ip4,
    chaddr=chaddr,
    sname=st.just(bytes(64)),
    file=st.just(bytes(128)),
    options=st.tuples(known_options, other_options).map(
        lambda pair: tuple({**pair[1], **pair[0]}.items())
    ),
)


@FUZZ
@given(st.sampled_from(sorted(CONFIGS)), requests)
def test_structured_requests_keep_the_invariants(config: str, msg: DhcpMessage) -> None:
    responder = SingleLeaseResponder(CONFIGS[config])
    sent = handle(encode(msg), responder)
    if msg.client_mac != VM_MAC:
        assert sent is None
        assert responder.stats.ignored_foreign + responder.stats.ignored_other == 1


@FUZZ
@given(st.sampled_from(sorted(CONFIGS)), st.lists(requests, min_size=2, max_size=6), st.data())
def test_a_stream_through_one_exchange_keeps_the_invariants(
    config: str, msgs: list[DhcpMessage], data: st.DataObject
) -> None:
    """The server's memo of OFFERs lives across datagrams: feed one exchange a
    stream, with retransmissions (same request, new xid and secs) mixed in."""
    exchange = Exchange(SingleLeaseResponder(CONFIGS[config]))
    for msg in msgs:
        handle(encode(msg), exchange)
        xid = data.draw(st.integers(0, 2**32 - 1))
        again = handle(encode(replace(msg, xid=xid, secs=msg.secs ^ 1)), exchange)
        if again is not None:
            assert again[IP_UDP_HEADERS + 4 : IP_UDP_HEADERS + 8] == xid.to_bytes(4, "big")


@FUZZ
@given(
    st.sampled_from(CAPTURES),
    st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), max_size=12),
    st.integers(200, 700),
)
def test_mutated_client_captures_keep_the_invariants(capture: Path, flips, cut: int) -> None:
    data = bytearray(capture.read_bytes())
    data[28:34] = VM_MAC.packed
    for where, value in flips:
        if where < len(data):
            data[where] = value
    handle(bytes(data[:cut]), SingleLeaseResponder(CONFIGS["bridge"]))


@FUZZ
@given(st.binary(min_size=236, max_size=236), st.binary(max_size=600))
def test_random_option_areas_from_the_vm_mac_keep_the_invariants(
    header: bytes, area: bytes
) -> None:
    head = bytearray(header)
    head[0:3] = b"\x01\x01\x06"
    head[28:34] = VM_MAC.packed
    handle(bytes(head) + MAGIC_COOKIE + area, SingleLeaseResponder(CONFIGS["calico"]))


@FUZZ
@given(requests, st.binary(min_size=6, max_size=6).filter(lambda m: m != VM_MAC.packed))
def test_a_foreign_mac_is_never_answered(msg: DhcpMessage, mac: bytes) -> None:
    fields = {k: getattr(msg, k) for k in DhcpMessage.__slots__}  # type: ignore[attr-defined]
    foreign = DhcpMessage(
        **{
            **fields,
            "op": 1,
            "htype": 1,
            "hlen": 6,
            "chaddr": mac + msg.chaddr[6:],
            "options": (
                (53, b"\x01"),
                *tuple((code, value) for code, value in msg.options if code != 53),
            ),
        }
    )
    for config in CONFIGS.values():
        responder = SingleLeaseResponder(config)
        assert handle(encode(foreign), responder) is None
        assert responder.stats.ignored_foreign == 1


def test_captures_are_found() -> None:
    assert len(CAPTURES) == 3
    for capture in CAPTURES:
        data = bytearray(capture.read_bytes())
        data[28:34] = VM_MAC.packed
        assert handle(bytes(data), SingleLeaseResponder(CONFIGS["bridge"])) is not None
