"""Frames for the tap: scapy checks what vmnet builds and builds what vmnet reads."""

from ipaddress import IPv6Address, IPv6Interface

import pytest
from scapy.layers.inet import UDP
from scapy.layers.inet6 import ICMPv6ND_RA, ICMPv6ND_RS, ICMPv6NDOptSrcLLAddr, IPv6
from scapy.layers.l2 import Ether

from vmnet.core.addr import MacAddress, eui64_link_local
from vmnet.core.errors import DhcpDecodeError
from vmnet.protocols.dhcp6 import frames
from vmnet.protocols.dhcp6.config import Dhcp6Config
from vmnet.protocols.dhcp6.ra import build_ra

VM = MacAddress.parse("52:54:00:aa:bb:02")
BRIDGE = MacAddress.parse("0a:58:0a:f4:00:01")
GW_MAC = MacAddress.parse("92:39:9c:df:aa:75")
GW_LL = IPv6Address("fe80::9039:9cff:fedf:aa75")


def test_eui64_link_local_is_the_kernels() -> None:
    # the cni0 bridge of a test pod: MAC 92:39:9c:df:aa:75, `ip -6 addr` fe80::9039:9cff:fedf:aa75
    assert eui64_link_local(GW_MAC) == GW_LL


@pytest.mark.parametrize("payload", [b"", b"\x07" + b"x" * 40, b"odd"])
def test_a_udp_frame_has_the_checksum_scapy_computes(payload: bytes) -> None:
    src, dst = eui64_link_local(BRIDGE), IPv6Address("fe80::5054:ff:feaa:bb02")
    data = frames.frame(
        dst_mac=VM,
        src_mac=BRIDGE,
        src=src,
        dst=dst,
        next_header=frames.UDP,
        body=frames.udp(547, 546, payload),
        hop_limit=64,
    )
    pkt = Ether(data)
    assert (pkt.dst, pkt.src) == (str(VM), str(BRIDGE))
    assert (pkt[IPv6].src, pkt[IPv6].dst, pkt[IPv6].hlim) == (str(src), str(dst), 64)
    assert (pkt[UDP].sport, pkt[UDP].dport, bytes(pkt[UDP].payload)) == (547, 546, payload)
    sent = pkt[UDP].chksum
    del pkt[UDP].chksum
    assert Ether(bytes(pkt))[UDP].chksum == sent != 0


def test_an_ra_frame_is_a_valid_ra_from_the_router_to_the_vm_alone() -> None:
    cfg = Dhcp6Config(
        VM, IPv6Interface("fd00:22::2/64"), BRIDGE, mtu=1500, router=GW_LL, router_mac=GW_MAC
    )
    data = frames.frame(
        dst_mac=VM,
        src_mac=GW_MAC,
        src=GW_LL,
        dst=IPv6Address("ff02::1"),
        next_header=frames.ICMPV6,
        body=build_ra(cfg),
        hop_limit=255,
    )
    pkt = Ether(data)
    assert pkt.dst == str(VM)  # unicast frame, multicast packet (RFC 6085)
    assert (pkt[IPv6].src, pkt[IPv6].dst, pkt[IPv6].hlim) == (str(GW_LL), "ff02::1", 255)
    ra = pkt[ICMPv6ND_RA]
    assert (ra.M, ra.O, ra.routerlifetime) == (1, 1, 1800)
    assert pkt[ICMPv6NDOptSrcLLAddr].lladdr == str(GW_MAC)  # the router's, not the bridge's
    sent = ra.cksum
    del ra.cksum
    assert Ether(bytes(pkt))[ICMPv6ND_RA].cksum == sent


def test_an_ra_for_a_router_of_unknown_mac_has_no_source_link_layer_option() -> None:
    cfg = Dhcp6Config(VM, IPv6Interface("fd00:22::2/64"), BRIDGE, router=GW_LL)
    assert ICMPv6NDOptSrcLLAddr not in ICMPv6ND_RA(build_ra(cfg))


def test_a_lone_address_puts_no_prefix_on_link() -> None:
    ra = build_ra(Dhcp6Config(VM, IPv6Interface("fd00:22::2/128"), BRIDGE))
    assert len(ra) == 16 + 8  # header and source link-layer option only


def test_split_reads_what_the_vm_sends() -> None:
    rs = (
        Ether(src=str(VM), dst="33:33:00:00:00:02")
        / IPv6(src="fe80::5054:ff:feaa:bb02", dst="ff02::2", hlim=255)
        / ICMPv6ND_RS()
        / ICMPv6NDOptSrcLLAddr(lladdr=str(VM))
    )
    got = frames.split(bytes(rs) + b"\0" * 6)  # Ethernet padding is cut off
    assert (got.src_mac, got.src, got.next_header, got.hop_limit) == (
        VM,
        IPv6Address("fe80::5054:ff:feaa:bb02"),
        frames.ICMPV6,
        255,
    )
    assert got.body == bytes(rs[ICMPv6ND_RS])


@pytest.mark.parametrize(
    "data",
    [b"", bytes(Ether(type=0x0800) / (b"\x45" + b"\0" * 60)), bytes(Ether() / IPv6(plen=100))],
    ids=["empty", "ipv4", "truncated"],
)
def test_split_refuses_what_is_not_a_whole_ipv6_frame(data: bytes) -> None:
    with pytest.raises(DhcpDecodeError):
        frames.split(data)
