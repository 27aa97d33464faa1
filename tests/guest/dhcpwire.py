"""What a guest's DHCP clients said on the wire, read from a capture with scapy.

Independent of vmnet's codecs: each captured frame is decoded by scapy and
named after RFC 2131 §4.3.2 (the client states a DHCPREQUEST is sent in)
or RFC 8415 §7.3 (message types).
"""

from __future__ import annotations

from dataclasses import dataclass

from scapy.layers.dhcp import BOOTP, DHCP
from scapy.layers.inet import IP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether

V4_TYPES = {1: "discover", 2: "offer", 3: "request", 4: "decline", 5: "ack", 6: "nak"}
V4_TYPES |= {7: "release", 8: "inform"}
V6_TYPES = {1: "solicit", 2: "advertise", 3: "request", 4: "confirm", 5: "renew", 6: "rebind"}
V6_TYPES |= {7: "reply", 8: "release", 9: "decline", 11: "information-request"}


@dataclass(frozen=True)
class Message:
    family: int
    kind: str  # "discover", "selecting", "init-reboot", "renewing", "rebinding", "ack", ...
    src_mac: str
    address: str | None = None  # DHCPv4: yiaddr of a reply, ciaddr or option 50 of a request


def _v4(pkt: Ether) -> Message:
    bootp = pkt[BOOTP]
    options = {o[0]: o[1] for o in pkt[DHCP].options if isinstance(o, tuple) and len(o) >= 2}
    kind = V4_TYPES.get(options.get("message-type"), "other")
    address = bootp.yiaddr if bootp.op == 2 else bootp.ciaddr
    if kind == "request":
        if "server_id" in options:
            kind = "selecting"
        elif bootp.ciaddr == "0.0.0.0":
            kind, address = "init-reboot", options.get("requested_addr")
        else:
            kind = "rebinding" if pkt[IP].dst == "255.255.255.255" else "renewing"
    return Message(4, kind, pkt.src, address)


def messages(frames: list[bytes]) -> list[Message]:
    """Every DHCPv4 and DHCPv6 message in `frames`, in order."""
    out = []
    for data in frames:
        pkt = Ether(data)
        if DHCP in pkt:
            out.append(_v4(pkt))
        elif IPv6 in pkt and UDP in pkt and {pkt[UDP].sport, pkt[UDP].dport} == {546, 547}:
            payload = bytes(pkt[UDP].payload)  # scapy's DHCP6_* classes share no base to test
            kind = V6_TYPES.get(payload[0], "other") if payload else "other"
            out.append(Message(6, kind, pkt.src))
    return out


def kinds(found: list[Message], family: int) -> list[str]:
    return [m.kind for m in found if m.family == family]
