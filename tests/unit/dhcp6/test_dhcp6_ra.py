"""Router advertisements: builder bytes (by hand and via scapy), RS validation, timing."""

from ipaddress import IPv6Address, IPv6Interface

import pytest
from scapy.layers.inet6 import (
    ICMPv6ND_RA,
    ICMPv6ND_RS,
    ICMPv6NDOptMTU,
    ICMPv6NDOptPrefixInfo,
    ICMPv6NDOptSrcLLAddr,
    IPv6,
    in6_chksum,
)

from vmnet.core.addr import MacAddress
from vmnet.core.errors import DhcpDecodeError
from vmnet.protocols.dhcp6.config import Dhcp6Config
from vmnet.protocols.dhcp6.ra import RaSchedule, build_ra, parse_rs

BRIDGE = MacAddress.parse("02:00:00:00:00:00")
GUEST = MacAddress.parse("52:54:00:aa:bb:02")
LINK_LOCAL = "fe80::ff:fe00:0"


def config(**over: object) -> Dhcp6Config:
    base: dict[str, object] = {
        "client_mac": GUEST,
        "address": IPv6Interface("fd10:0:2::2/120"),
        "server_mac": BRIDGE,
        "mtu": 1400,
    }
    return Dhcp6Config(**(base | over))  # type: ignore[arg-type]


def test_ra_bytes_by_hand() -> None:
    assert build_ra(config()) == bytes.fromhex(
        "86"
        "00"
        "0000"
        "40"
        "c0"
        "0708"
        "00000000"
        "00000000"  # RA, M+O, lifetime 1800
        "01"
        "01"
        "020000000000"  # source link-layer address
        "05"
        "01"
        "0000"
        "00000578"  # MTU 1400
        "03"
        "04"
        "78"
        "80"
        "00278d00"
        "00093a80"
        "00000000"  # /120, L=1 A=0, 30 d / 7 d
        "fd100000000200000000000000000000"
    )


def test_scapy_reads_the_ra_and_agrees_on_the_checksum_position() -> None:
    raw = build_ra(config(router_lifetime=600))
    # The kernel fills the checksum; do what it does, then let scapy verify it.
    ip = IPv6(src=LINK_LOCAL, dst="ff02::1", hlim=255, nh=58)
    checksum = in6_chksum(58, ip, raw)
    pkt = IPv6(bytes(ip / (raw[:2] + checksum.to_bytes(2, "big") + raw[4:])))
    ra = pkt[ICMPv6ND_RA]
    assert ra.cksum == checksum
    ra.cksum = None
    assert IPv6(bytes(pkt))[ICMPv6ND_RA].cksum == checksum
    assert (ra.M, ra.O, ra.routerlifetime, ra.chlim) == (1, 1, 600, 64)
    assert pkt[ICMPv6NDOptSrcLLAddr].lladdr == str(BRIDGE)
    assert pkt[ICMPv6NDOptMTU].mtu == 1400
    info = pkt[ICMPv6NDOptPrefixInfo]
    assert (info.prefix, info.prefixlen, info.L, info.A) == ("fd10:0:2::", 120, 1, 0)


def test_no_mtu_option_without_mtu_and_zero_lifetime_is_kept() -> None:
    raw = build_ra(config(mtu=None, router_lifetime=0))
    pkt = ICMPv6ND_RA(raw)
    assert pkt.routerlifetime == 0
    assert ICMPv6NDOptMTU not in pkt
    assert len(raw) == 16 + 8 + 32


def rs(*, lladdr: str | None = str(GUEST)) -> bytes:
    pkt = ICMPv6ND_RS()
    if lladdr is not None:
        pkt = pkt / ICMPv6NDOptSrcLLAddr(lladdr=lladdr)
    return bytes(pkt)


def test_parse_rs_reads_the_source_mac() -> None:
    assert parse_rs(rs(), 255, IPv6Address("fe80::1")).source_mac == GUEST
    assert parse_rs(rs(lladdr=None), 255, IPv6Address("::")).source_mac is None


@pytest.mark.parametrize(
    "data, hops, source, match",
    [
        (rs(), 64, "fe80::1", "hop limit 64"),
        (rs(), None, "fe80::1", "hop limit None"),
        (rs()[:7], 255, "fe80::1", "not a solicitation"),
        (b"\x86" + rs()[1:], 255, "fe80::1", "not a solicitation"),
        (rs()[:1] + b"\x01" + rs()[2:], 255, "fe80::1", "not a solicitation"),
        (rs()[:9] + b"\x00" + rs()[10:], 255, "fe80::1", "bad length"),
        (rs()[:9] + b"\x02" + rs()[10:], 255, "fe80::1", "bad length"),
        (rs() + b"\x01", 255, "fe80::1", "bad length"),
        (rs(), 255, "::", "unspecified"),
    ],
)
def test_parse_rs_rejects_what_rfc_4861_6_1_1_rejects(
    data: bytes, hops: int | None, source: str, match: str
) -> None:
    with pytest.raises(DhcpDecodeError, match=match):
        parse_rs(data, hops, IPv6Address(source))


def test_schedule_first_ra_at_once_then_initial_cap() -> None:
    s = RaSchedule(600.0, rand=lambda: 1.0)
    assert s.timeout(0.0) == 0.0
    for n in range(3):
        s.sent_at(100.0 * n)
        assert s.due == 100.0 * n + 16.0
    s.sent_at(1000.0)
    assert s.due == 1600.0
    assert s.sent == 4


def test_schedule_interval_is_between_min_and_max() -> None:
    low = RaSchedule(10.0, rand=lambda: 0.0)
    low.sent_at(0.0)
    assert low.due == pytest.approx(3.3)
    high = RaSchedule(10.0, rand=lambda: 0.999)
    high.sent_at(0.0)
    assert 9.9 < high.due <= 10.0


def test_solicitation_brings_the_ra_forward_but_not_closer_than_min_delay() -> None:
    s = RaSchedule(600.0, rand=lambda: 0.5)
    s.sent_at(0.0)
    s.due = 500.0
    s.solicited(100.0)
    assert s.due == pytest.approx(100.25)  # random 0..0.5 s
    s.sent_at(100.25)
    s.due = 500.0
    s.solicited(101.0)
    assert s.due == pytest.approx(100.25 + 3.0 + 0.25)  # MIN_DELAY_BETWEEN_RAS
    s.due = 102.0
    s.solicited(101.0)
    assert s.due == 102.0  # an earlier periodic RA stays


def test_small_test_intervals_shrink_the_delays() -> None:
    s = RaSchedule(1.0, rand=lambda: 1.0)
    assert s.min_delay == pytest.approx(0.33)
    s.sent_at(0.0)
    s.solicited(0.1)
    assert s.due == pytest.approx(0.33 + 0.33)


def test_retry_and_bad_interval() -> None:
    s = RaSchedule(5.0)
    s.retry(7.0, 0.25)
    assert s.due == 7.25 and s.timeout(7.0) == 0.25
    with pytest.raises(ValueError, match="positive"):
        RaSchedule(0.0)
