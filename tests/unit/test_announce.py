"""Address announcements (vmnet.protocols.announce), decoded by scapy."""

import ipaddress

from scapy.layers.inet6 import ICMPv6ND_NA, ICMPv6NDOptDstLLAddr, IPv6
from scapy.layers.l2 import ARP, Ether

from vmnet.core.addr import MacAddress
from vmnet.protocols.announce import announcements

NIC = MacAddress.parse("aa:b6:33:bd:9c:03")
VM = MacAddress.parse("9e:44:28:ea:b0:8f")


def test_an_arp_announcement_names_the_vm_mac_in_a_frame_from_the_pod_nic() -> None:
    (data,) = announcements(NIC, VM, [ipaddress.ip_address("10.31.0.2")])
    pkt = Ether(data)
    assert (pkt.src, pkt.dst, len(data)) == (str(NIC), "ff:ff:ff:ff:ff:ff", 60)
    arp = pkt[ARP]
    assert (arp.op, arp.hwsrc, arp.psrc, arp.pdst, arp.hwdst) == (
        1,
        str(VM),
        "10.31.0.2",
        "10.31.0.2",
        "00:00:00:00:00:00",
    )


def test_an_unsolicited_na_overrides_with_the_vm_mac() -> None:
    (data,) = announcements(NIC, VM, [ipaddress.ip_address("fd00:31::2")])
    pkt = Ether(data)
    assert (pkt.src, pkt.dst) == (str(NIC), "33:33:00:00:00:01")
    assert (pkt[IPv6].src, pkt[IPv6].dst, pkt[IPv6].hlim) == ("fd00:31::2", "ff02::1", 255)
    na = pkt[ICMPv6ND_NA]
    assert (na.R, na.S, na.O, na.tgt) == (0, 0, 1, "fd00:31::2")
    assert pkt[ICMPv6NDOptDstLLAddr].lladdr == str(VM)
    sent = na.cksum
    del na.cksum
    assert Ether(bytes(pkt))[ICMPv6ND_NA].cksum == sent
