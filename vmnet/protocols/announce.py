"""Telling the pod's network that the pod's addresses now live at the VM's MAC.

Pure: frames only. The bridge binding moves the pod's IPs to the VM, and
the VM's MAC is usually not the pod NIC's original one (vmnet's default
MAC is derived from the VM's identity, so it survives restarts and
migrations). Neighbours that cached the pod's original MAC (the node, the
gateway, other pods) would keep sending to it until their entry times out
and is probed again: for IPv6 that is tens of seconds, since the VM's own
solicitations come from its link-local address and never refresh the entry
for its global one. So phase 1 announces each moved address once, out of
the pod NIC, with the VM's MAC as its link-layer address:

- IPv4: an ARP announcement (RFC 5227 §2.3): an ARP request whose sender
  and target IP are the address, sender MAC the VM's, to broadcast;
- IPv6: an unsolicited Neighbor Advertisement (RFC 4861 §7.2.6): to
  ff02::1, Override set, Solicited clear, with a Target Link-Layer Address
  option naming the VM's MAC, hop limit 255.

The Ethernet source is the pod NIC's own (new) MAC, not the VM's: switches
and bridges must not learn the VM's MAC on the pod NIC's port from a frame
the VM did not send (during a live migration the VM still runs elsewhere).
"""

from __future__ import annotations

import ipaddress
import struct

from vmnet.core.addr import IPAddress, MacAddress
from vmnet.protocols.dhcp6.frames import ICMPV6, frame

BROADCAST = MacAddress.parse("ff:ff:ff:ff:ff:ff")
ALL_NODES_MAC = MacAddress.parse("33:33:00:00:00:01")
ALL_NODES = ipaddress.IPv6Address("ff02::1")
ETH_P_ARP = 0x0806
NEIGHBOR_ADVERTISEMENT = 136
NA_OVERRIDE = 0x20000000
OPT_TARGET_LLADDR = 2
HOP_LIMIT = 255


def arp_announcement(src_mac: MacAddress, owner: MacAddress, ip: ipaddress.IPv4Address) -> bytes:
    """An ARP announcement that `ip` is at `owner`, in a frame from `src_mac`."""
    eth = BROADCAST.packed + src_mac.packed + struct.pack("!H", ETH_P_ARP)
    arp = struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1)  # Ethernet, IPv4, request
    arp += owner.packed + ip.packed + bytes(6) + ip.packed
    return eth + arp + bytes(18)  # padded to the 60-byte minimum


def neighbor_advertisement(
    src_mac: MacAddress, owner: MacAddress, ip: ipaddress.IPv6Address
) -> bytes:
    """An unsolicited, overriding NA that `ip` is at `owner`, in a frame from `src_mac`."""
    body = struct.pack("!BBHI", NEIGHBOR_ADVERTISEMENT, 0, 0, NA_OVERRIDE) + ip.packed
    body += struct.pack("!BB", OPT_TARGET_LLADDR, 1) + owner.packed
    return frame(
        dst_mac=ALL_NODES_MAC,
        src_mac=src_mac,
        src=ip,
        dst=ALL_NODES,
        next_header=ICMPV6,
        body=body,
        hop_limit=HOP_LIMIT,
    )


def announcements(src_mac: MacAddress, owner: MacAddress, ips: list[IPAddress]) -> list[bytes]:
    """One announcement per address, in order."""
    out = []
    for ip in ips:
        if isinstance(ip, ipaddress.IPv4Address):
            out.append(arp_announcement(src_mac, owner, ip))
        else:
            out.append(neighbor_advertisement(src_mac, owner, ip))
    return out
