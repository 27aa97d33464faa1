"""The sans-IO DHCPv6 codec: hand-computed bytes, and scapy as an independent peer."""

from ipaddress import IPv6Address

import pytest
from scapy.layers.dhcp6 import (
    DUID_LLT,
    DHCP6_Reply,
    DHCP6_Solicit,
    DHCP6OptClientId,
    DHCP6OptDNSDomains,
    DHCP6OptDNSServers,
    DHCP6OptElapsedTime,
    DHCP6OptIA_NA,
    DHCP6OptIAAddress,
    DHCP6OptOptReq,
    DHCP6OptRapidCommit,
)
from scapy.layers.inet import UDP
from scapy.layers.inet6 import IPv6

from vmnet.core.addr import MacAddress
from vmnet.core.errors import ConfigError, DhcpDecodeError
from vmnet.protocols.dhcp6.codec import (
    Dhcp6Message,
    Ia,
    IaAddress,
    MessageType,
    OptionCode,
    Status,
    StatusCode,
    decode,
    encode,
    encode_options,
    ipv6_udp,
)
from vmnet.protocols.dhcp6.options import domain_list, duid_ll, duid_mac, ipv6_list

GUEST = MacAddress.parse("52:54:00:aa:bb:02")
LEASE = IPv6Address("fd10:0:2::2")


def hand_solicit() -> bytes:
    """SOLICIT written field by field from RFC 8415 §8 and §21."""
    return bytes.fromhex(
        "01"
        "123456"  # type 1, transaction id
        "0001"
        "000e"
        "0001"
        "0001"
        "00000001"
        "525400aabb02"  # client id: DUID-LLT
        "0003"
        "000c"
        "00000007"
        "00000000"
        "00000000"  # IA_NA iaid 7, T1 0, T2 0
        "0008"
        "0002"
        "0000"  # elapsed time 0
        "000e"
        "0000"  # rapid commit
        "0006"
        "0004"
        "0017"
        "0018"  # ORO: 23, 24
    )


def test_decode_hand_built_solicit() -> None:
    msg = decode(hand_solicit())
    assert msg.msg_type == MessageType.SOLICIT and msg.transaction_id == 0x123456
    assert msg.client_id == bytes.fromhex("0001000100000001525400aabb02")
    assert duid_mac(msg.client_id) == GUEST
    assert msg.server_id is None
    assert msg.rapid_commit
    assert msg.oro == (23, 24)
    assert msg.ias == (Ia(OptionCode.IA_NA, 7),)
    assert encode(msg) == hand_solicit()


def test_scapy_solicit_decodes_the_same() -> None:
    pkt = (
        DHCP6_Solicit(trid=0x123456)
        / DHCP6OptClientId(duid=DUID_LLT(lladdr=str(GUEST), timeval=1))
        / DHCP6OptIA_NA(iaid=7)
        / DHCP6OptElapsedTime()
        / DHCP6OptRapidCommit()
        / DHCP6OptOptReq(reqopts=[23, 24])
    )
    assert bytes(pkt) == hand_solicit()
    assert decode(bytes(pkt)) == decode(hand_solicit())


def hand_reply() -> bytes:
    return bytes.fromhex(
        "07"
        "123456"
        "0001"
        "000e"
        "00010001"
        "00000001"
        "525400aabb02"  # client id echoed
        "0002"
        "000a"
        "0003"
        "0001"
        "020000000000"  # server id: DUID-LL
        "0003"
        "0028"
        "00000007"
        "00000e10"
        "00001680"  # IA_NA 7, T1 3600, T2 5760
        "0005"
        "0018"
        "fd100000000200000000000000000002"
        "00001c20"
        "00001c20"
        "0017"
        "0010"
        "fd000000000000000000000000000010"  # DNS fd00::10
        "0018"
        "0013"
        "03737663"
        "07636c7573746572"
        "056c6f63616c"
        "00"  # svc.cluster.local
    )


def reply_message() -> Dhcp6Message:
    iaaddr = IaAddress(LEASE, 7200, 7200).option()
    return Dhcp6Message(
        MessageType.REPLY,
        0x123456,
        (
            (OptionCode.CLIENTID, bytes.fromhex("0001000100000001525400aabb02")),
            (OptionCode.SERVERID, duid_ll(MacAddress.parse("02:00:00:00:00:00"))),
            Ia(OptionCode.IA_NA, 7, 3600, 5760, (iaaddr,)).option(),
            (OptionCode.DNS_SERVERS, ipv6_list([IPv6Address("fd00::10")])),
            (OptionCode.DOMAIN_LIST, domain_list(["svc.cluster.local"])),
        ),
    )


def test_encode_reply_is_byte_exact() -> None:
    assert encode(reply_message()) == hand_reply()
    assert decode(hand_reply()) == reply_message()


def test_scapy_reads_our_reply() -> None:
    pkt = DHCP6_Reply(encode(reply_message()))
    assert pkt.trid == 0x123456
    assert pkt[DHCP6OptIA_NA].iaid == 7
    assert (pkt[DHCP6OptIA_NA].T1, pkt[DHCP6OptIA_NA].T2) == (3600, 5760)
    addr = pkt[DHCP6OptIAAddress]
    assert (addr.addr, addr.preflft, addr.validlft) == (str(LEASE), 7200, 7200)
    assert pkt[DHCP6OptDNSServers].dnsservers == ["fd00::10"]
    assert pkt[DHCP6OptDNSDomains].dnsdomains == ["svc.cluster.local."]


def test_nested_accessors() -> None:
    ia = decode(hand_reply()).ias[0]
    assert ia.addresses == (IaAddress(LEASE, 7200, 7200),)
    status = Status(StatusCode.NOT_ON_LINK, "moved").option()
    assert status == (13, b"\x00\x04moved")
    assert Status.parse(status[1]) == Status(4, "moved")
    ta = Ia(OptionCode.IA_TA, 9, options=(status,)).option()
    assert ta == (4, bytes.fromhex("00000009000d0007") + b"\x00\x04moved")
    assert Ia.parse(*ta) == Ia(OptionCode.IA_TA, 9, options=(status,))


def test_encode_options_example() -> None:
    assert encode_options(((14, b""), (7, b"\xff"))) == bytes.fromhex("000e000000070001ff")


@pytest.mark.parametrize(
    "data, match",
    [
        (b"\x01\x00", "shorter than 4"),
        (bytes.fromhex("0c000000"), "relay"),
        (bytes.fromhex("010000000001"), "header truncated"),
        (bytes.fromhex("01000000000100040000"), "truncated"),
        (bytes.fromhex("010000000003000400000001"), "option 3 is shorter than 12"),
        (bytes.fromhex("010000000003000e0000000100000000000000000005"), "header truncated"),
        (
            bytes.fromhex("010000000003001000000001000000000000000000050000"),
            "option 5 is shorter than 24",
        ),
        (bytes.fromhex("010000000008000100"), "must be 2 bytes"),
        (bytes.fromhex("01000000000e000100"), "must be 0 bytes"),
        (bytes.fromhex("0100000000060003001700"), "not whole"),
        (bytes.fromhex("0100000000170004fd000000"), "not whole"),
        (bytes.fromhex("01000000000d000100"), "status code"),
    ],
)
def test_decode_errors(data: bytes, match: str) -> None:
    with pytest.raises(DhcpDecodeError, match=match):
        decode(data)


def test_message_constructor_rejects_what_cannot_be_carried() -> None:
    with pytest.raises(ValueError, match="24 bits"):
        Dhcp6Message(1, 0x1000000)
    with pytest.raises(ValueError, match="cannot be carried"):
        Dhcp6Message(MessageType.RELAY_FORW, 1)
    with pytest.raises(ValueError, match="cannot be carried"):
        Dhcp6Message(1, 1, ((70000, b""),))


@pytest.mark.parametrize(
    "duid, mac",
    [
        (bytes.fromhex("0001000100000001525400aabb02"), GUEST),
        (bytes.fromhex("00030001525400aabb02"), GUEST),
        (bytes.fromhex("00030006525400aabb02"), None),  # IEEE 802 hw type 6
        (bytes.fromhex("0004") + bytes(16), None),  # DUID-UUID (RFC 6355)
        (bytes.fromhex("00020000000901"), None),  # DUID-EN
        (bytes.fromhex("000300015254"), None),
        (b"\x00", None),
        (None, None),
    ],
)
def test_duid_mac(duid: bytes | None, mac: MacAddress | None) -> None:
    assert duid_mac(duid) == mac


def test_duid_ll_is_kubevirts_server_id() -> None:
    assert duid_ll(MacAddress.parse("02:00:00:00:00:00")).hex() == "00030001020000000000"


def test_domain_list_is_uncompressed_labels() -> None:
    assert domain_list(["svc.local", "local."]) == b"\x03svc\x05local\x00\x05local\x00"
    assert domain_list([]) == b""
    with pytest.raises(ConfigError, match="search"):
        domain_list(["bad..name"])


def test_ipv6_udp_splits_a_scapy_packet() -> None:
    pkt = IPv6(src="fe80::1", dst="ff02::1:2") / UDP(sport=546, dport=547) / hand_solicit()
    got = ipv6_udp(bytes(pkt))
    assert (got.src, got.dst) == (IPv6Address("fe80::1"), IPv6Address("ff02::1:2"))
    assert (got.src_port, got.dst_port) == (546, 547)
    assert got.payload == hand_solicit()
    assert ipv6_udp(bytes(pkt) + b"trailer").payload == hand_solicit()


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda b: b[:40], "not an IPv6/UDP"),
        (lambda b: b"\x45" + b[1:], "not an IPv6/UDP"),
        (lambda b: b[:6] + b"\x06" + b[7:], "next header 6"),
        (lambda b: b[:44] + b"\xff\xff" + b[46:], "does not fit"),
        (lambda b: b[:44] + b"\x00\x07" + b[46:], "does not fit"),
    ],
)
def test_ipv6_udp_errors(mutate, match: str) -> None:  # type: ignore[no-untyped-def]
    pkt = bytes(IPv6(src="fe80::1", dst="ff02::1:2") / UDP(sport=546, dport=547) / b"abcd")
    with pytest.raises(DhcpDecodeError, match=match):
        ipv6_udp(mutate(pkt))
