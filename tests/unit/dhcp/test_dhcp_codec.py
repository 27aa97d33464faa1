"""The sans-IO codec: hand-built bytes, golden captures, scapy as an independent peer."""

from ipaddress import IPv4Address
from pathlib import Path

import pytest
from scapy.layers.dhcp import BOOTP, DHCP
from scapy.layers.inet import IP, UDP

from vmnet.core.addr import MacAddress
from vmnet.core.errors import DhcpDecodeError
from vmnet.protocols.dhcp4.codec import (
    BOOTREPLY,
    DhcpMessage,
    decode,
    encode,
    encode_option,
    frame_ipv4_udp,
)

CAPTURES = Path(__file__).parent / "captures" / "test_dhcp_codec"
MAC = bytes.fromhex("525400123456")


def hand_discover() -> bytes:
    """A DISCOVER written field by field from RFC 2131 figure 1."""
    return (
        bytes([1, 1, 6, 0])
        + bytes.fromhex("39032a3c")
        + bytes([0, 3, 0x80, 0])
        + bytes(16)
        + MAC
        + bytes(10)
        + bytes(64)
        + bytes(128)
        + bytes([99, 130, 83, 99])
        + bytes([53, 1, 1, 57, 2, 0x05, 0xDC, 55, 4, 1, 3, 6, 121, 0, 0, 255])
        + bytes(20)
    )


def test_decode_hand_built_discover() -> None:
    msg = decode(hand_discover())
    assert (msg.op, msg.htype, msg.hlen, msg.xid, msg.secs) == (1, 1, 6, 0x39032A3C, 3)
    assert msg.broadcast
    assert msg.client_mac == MacAddress(MAC)
    assert msg.message_type == 1
    assert msg.max_message_size == 1500
    assert msg.parameter_request_list == (1, 3, 6, 121)
    assert msg.options == ((53, b"\x01"), (57, b"\x05\xdc"), (55, bytes([1, 3, 6, 121])))
    assert msg.requested_ip is None and msg.server_id is None


def test_encode_is_byte_exact_and_padded() -> None:
    msg = decode(hand_discover())
    data = encode(msg)
    assert len(data) == 300
    assert data[:240] == hand_discover()[:240]
    assert data[240:254] == bytes([53, 1, 1, 57, 2, 0x05, 0xDC, 55, 4, 1, 3, 6, 121, 255])
    assert data[254:] == bytes(46)


def test_golden_offer_capture() -> None:
    msg = DhcpMessage(
        op=BOOTREPLY,
        xid=0x39032A3C,
        flags=0x8000,
        yiaddr=IPv4Address("10.244.0.5"),
        chaddr=MAC,
        options=(
            (53, b"\x02"),
            (54, IPv4Address("169.254.75.10").packed),
            (51, b"\x05\x25\x0a\x80"),
            (1, b"\xff\xff\xff\x00"),
            (3, bytes([10, 244, 0, 1])),
        ),
    )
    golden = (CAPTURES / "test_golden_offer_capture.bin").read_bytes()
    assert encode(msg) == golden
    assert decode(golden) == msg


def test_rfc3396_long_option_split_and_join() -> None:
    value = bytes(range(256)) + b"tail"
    assert (
        encode_option(224, value) == bytes([224, 255]) + value[:255] + bytes([224, 5]) + value[255:]
    )
    assert encode_option(80, b"") == bytes([80, 0])
    msg = DhcpMessage(options=((53, b"\x01"), (224, value)))
    assert decode(encode(msg)).option(224) == value


def test_decode_joins_split_options_and_reads_overloaded_fields() -> None:
    base = bytearray(hand_discover()[:240])
    file_area = bytes([15, 3]) + b"dom" + bytes([255])
    sname_area = bytes([66, 2]) + b"tf" + bytes([255])
    base[44:108] = sname_area.ljust(64, b"\0")
    base[108:236] = file_area.ljust(128, b"\0")
    data = (
        bytes(base) + bytes([53, 1, 3, 12, 2]) + b"ho" + bytes([52, 1, 3, 12, 2]) + b"st" + b"\xff"
    )
    msg = decode(data)
    assert msg.option(12) == b"host"
    assert msg.option(15) == b"dom"
    assert msg.option(66) == b"tf"
    assert [c for c, _ in msg.options] == [53, 12, 52, 15, 66]


@pytest.mark.parametrize(
    "data",
    [
        b"",
        bytes(239),
        hand_discover()[:236] + b"\x00\x00\x00\x00",
        hand_discover()[:240] + bytes([53, 5, 1]),
        hand_discover()[:240] + bytes([53]),
        bytes([1, 1, 17]) + hand_discover()[3:],
    ],
    ids=["empty", "short", "no-cookie", "truncated-value", "truncated-length", "hlen-17"],
)
def test_decode_rejects_with_decode_error_only(data: bytes) -> None:
    with pytest.raises(DhcpDecodeError):
        decode(data)


def test_missing_end_option_is_tolerated() -> None:
    msg = decode(hand_discover()[:240] + bytes([53, 1, 1]))
    assert msg.message_type == 1


def test_message_rejects_oversized_fields_and_uncarriable_codes() -> None:
    with pytest.raises(ValueError):
        DhcpMessage(chaddr=bytes(17))
    with pytest.raises(ValueError):
        DhcpMessage(options=((255, b""),))


def test_scapy_built_request_decodes() -> None:
    pkt = BOOTP(chaddr=MAC, xid=77, flags=0, ciaddr="0.0.0.0") / DHCP(
        options=[
            ("message-type", "request"),
            ("requested_addr", "10.0.0.5"),
            ("server_id", "169.254.75.10"),
            ("param_req_list", [1, 3, 6, 15, 119, 121]),
            ("max_dhcp_size", 1200),
            ("hostname", b"guest"),
            "end",
        ]
    )
    msg = decode(bytes(pkt))
    assert msg.xid == 77
    assert msg.message_type == 3
    assert msg.requested_ip == IPv4Address("10.0.0.5")
    assert msg.server_id == IPv4Address("169.254.75.10")
    assert msg.parameter_request_list == (1, 3, 6, 15, 119, 121)
    assert msg.max_message_size == 1200
    assert msg.option(12) == b"guest"
    assert msg.client_mac == MacAddress(MAC)


def test_scapy_parses_what_we_encode() -> None:
    msg = DhcpMessage(
        op=BOOTREPLY,
        xid=0xDEADBEEF,
        yiaddr=IPv4Address("10.0.0.5"),
        siaddr=IPv4Address("10.0.0.9"),
        chaddr=MAC,
        file=b"pxelinux.0",
        options=(
            (53, b"\x05"),
            (54, bytes([169, 254, 75, 10])),
            (51, b"\x00\x00\x0e\x10"),
            (1, b"\xff\xff\xff\x00"),
            (3, bytes([10, 0, 0, 1])),
            (6, bytes([10, 96, 0, 10, 1, 1, 1, 1])),
            (15, b"example.org"),
            (26, b"\x05\xaa"),
        ),
    )
    pkt = BOOTP(encode(msg))
    assert pkt.op == 2 and pkt.xid == 0xDEADBEEF
    assert pkt.yiaddr == "10.0.0.5" and pkt.siaddr == "10.0.0.9"
    assert pkt.chaddr[:6] == MAC
    assert pkt.file.rstrip(b"\0") == b"pxelinux.0"
    opts = {o[0]: o[1:] for o in pkt[DHCP].options if isinstance(o, tuple)}
    assert opts["message-type"] == (5,)
    assert opts["server_id"] == ("169.254.75.10",)
    assert opts["lease_time"] == (3600,)
    assert opts["subnet_mask"] == ("255.255.255.0",)
    assert opts["router"] == ("10.0.0.1",)
    assert opts["name_server"] == ("10.96.0.10", "1.1.1.1")
    assert opts["domain"] == (b"example.org",)
    assert opts["interface-mtu"] == (1450,)


def test_frame_checksums_match_scapy() -> None:
    payload = encode(DhcpMessage(op=BOOTREPLY, options=((53, b"\x02"),)))
    frame = frame_ipv4_udp(
        IPv4Address("169.254.75.10"), IPv4Address("255.255.255.255"), (67, 68), payload
    )
    parsed = IP(frame)
    assert parsed.src == "169.254.75.10" and parsed.dst == "255.255.255.255"
    assert parsed[UDP].sport == 67 and parsed[UDP].dport == 68
    assert bytes(parsed[UDP].payload) == payload
    fresh = IP(frame)
    del fresh.chksum
    del fresh[UDP].chksum
    rebuilt = IP(bytes(fresh))
    assert (rebuilt.chksum, rebuilt[UDP].chksum) == (parsed.chksum, parsed[UDP].chksum)
