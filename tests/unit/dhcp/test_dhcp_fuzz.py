"""Hypothesis: the codec round-trips, and remote bytes only ever raise DhcpDecodeError."""

import contextlib
from ipaddress import IPv4Address, IPv4Interface

from hypothesis import given, settings
from hypothesis import strategies as st

from vmnet.core.addr import MacAddress
from vmnet.core.errors import DhcpDecodeError
from vmnet.protocols.dhcp4.codec import MAGIC_COOKIE, DhcpMessage, decode, encode
from vmnet.protocols.dhcp4.config import DhcpConfig
from vmnet.protocols.dhcp4.responder import SingleLeaseResponder

ip4 = st.builds(IPv4Address, st.integers(0, 2**32 - 1))
options = st.dictionaries(
    st.integers(1, 254).filter(lambda c: c != 52), st.binary(max_size=600), max_size=12
).map(lambda d: tuple(d.items()))
messages = st.builds(
    DhcpMessage,
    op=st.integers(0, 255),
    htype=st.integers(0, 255),
    hlen=st.integers(0, 16),
    hops=st.integers(0, 255),
    xid=st.integers(0, 2**32 - 1),
    secs=st.integers(0, 65535),
    flags=st.integers(0, 65535),
    ciaddr=ip4,
    yiaddr=ip4,
    siaddr=ip4,
    giaddr=ip4,
    chaddr=st.binary(min_size=16, max_size=16),
    sname=st.binary(min_size=64, max_size=64),
    file=st.binary(min_size=128, max_size=128),
    options=options,
)
MAC = MacAddress.parse("52:54:00:12:34:56")
CONFIG = DhcpConfig(
    MAC,
    IPv4Interface("10.0.0.5/24"),
    IPv4Address("169.254.75.10"),
    router=IPv4Address("10.0.0.1"),
    search=("a.example.com",),
    hostname="vm",
)


@given(messages)
def test_decode_inverts_encode(msg: DhcpMessage) -> None:
    assert decode(encode(msg)) == msg


@given(st.binary(max_size=700))
def test_random_bytes_only_raise_decode_error(data: bytes) -> None:
    with contextlib.suppress(DhcpDecodeError):
        decode(data)


@settings(max_examples=300)
@given(st.binary(min_size=236, max_size=236), st.binary(max_size=400))
def test_random_options_only_raise_decode_error_and_responder_never_raises(
    header: bytes, area: bytes
) -> None:
    data = header + MAGIC_COOKIE + area
    try:
        msg = decode(data)
    except DhcpDecodeError:
        return
    SingleLeaseResponder(CONFIG).respond(msg)


@settings(max_examples=300)
@given(messages, st.sampled_from([1, 3, 4, 7, 8]), st.binary(max_size=40))
def test_responder_replies_fit_and_encode(msg: DhcpMessage, kind: int, prl: bytes) -> None:
    opts = dict(msg.options) | {53: bytes([kind]), 55: prl}
    fields = {k: getattr(msg, k) for k in DhcpMessage.__slots__}  # type: ignore[attr-defined]
    fields |= {"op": 1, "htype": 1, "hlen": 6, "chaddr": MAC.packed, "options": tuple(opts.items())}
    request = DhcpMessage(**fields)
    reply = SingleLeaseResponder(CONFIG).respond(request)
    if reply is not None:
        limit = max(request.max_message_size or 576, 576) - 28
        assert len(encode(reply.message)) <= limit
        assert decode(encode(reply.message)) == reply.message
